// TcpListener and TcpStream doing their job: addresses, round trips, a
// read and a write at once on one connection, half-close, many clients.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "fiber/socket_address.hpp"
#include "fiber/tcp.hpp"
#include "fiber/yield.hpp"
#include "tcp_helpers.hpp"

using fiber::SocketAddress;
using fiber::TcpListener;
using fiber::TcpStream;

TEST(SocketAddress, ParsesAndFormatsIpv4AndIpv6) {
    const auto v4 = SocketAddress::parse("127.0.0.1:7878");
    EXPECT_EQ(v4.family(), AF_INET);
    EXPECT_EQ(v4.port(), 7878);
    EXPECT_EQ(v4.to_string(), "127.0.0.1:7878");
    const auto v6 = SocketAddress::parse("[::1]:7878");
    EXPECT_EQ(v6.family(), AF_INET6);
    EXPECT_EQ(v6.to_string(), "[::1]:7878");
    EXPECT_EQ(SocketAddress::parse("[0:0::0:1]:0").to_string(), "[::1]:0");
    EXPECT_EQ(SocketAddress::parse("0.0.0.0:65535").port(), 65535);
}

TEST(SocketAddress, MalformedTextIsAnInvalidArgumentThatQuotesIt) {
    for (const char* text :
         {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
          "localhost:80", "::1:80", "[::1]", "[127.0.0.1]:80", "256.0.0.1:80", "[::1:80"}) {
        try {
            (void)SocketAddress::parse(text);
            ADD_FAILURE() << "parsed '" << text << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("'" + std::string(text) + "'"), std::string::npos)
                << e.what();
        }
    }
}

namespace {

// Echoes one connection until its client shuts down writing.
fiber::Task<> echo(TcpStream stream) {
    std::byte buffer[4096];
    while (std::size_t n = co_await stream.read(buffer)) {
        co_await stream.write_all(std::span(buffer).first(n));
    }
}

// Accepts forever, each connection echoed by a task of its own. It owns
// the listener: the test task that spawned it may end while it accepts.
fiber::Task<> echo_server(TcpListener listener, fiber::Spawner spawner) {
    for (;;) spawner.spawn(echo(std::move((co_await listener.accept()).stream)));
}

fiber::Task<> round_trip(const char* bind_address) {
    auto listener = TcpListener::bind(bind_address);
    EXPECT_NE(listener.local_address().port(), 0);  // port 0: the OS picked one
    TcpStream client = co_await TcpStream::connect(listener.local_address());
    auto [server, peer] = co_await listener.accept();
    EXPECT_EQ(peer.to_string(), server.peer_address().to_string());
    EXPECT_EQ(client.peer_address().to_string(), listener.local_address().to_string());
    client.set_nodelay();
    co_await client.write_all(bytes("hello"));
    EXPECT_EQ(co_await read_exactly(server, 5), "hello");
    co_await server.write_all(bytes("world!"));
    EXPECT_EQ(co_await read_exactly(client, 6), "world!");
}

}  // namespace

TEST(Tcp, RoundTripOnIpv4WithPortZero) {
    run_test([](fiber::Spawner) { return round_trip("127.0.0.1:0"); });
}

TEST(Tcp, RoundTripOnIpv6) {
    bool have_ipv6 = true;
    run_test([&](fiber::Spawner) -> fiber::Task<> {
        try {
            TcpListener::bind("[::1]:0");
        } catch (const std::system_error&) {
            have_ipv6 = false;
            co_return;
        }
        co_await round_trip("[::1]:0");
    });
    if (!have_ipv6) GTEST_SKIP() << "no IPv6 loopback here";
}

namespace {

// One side of the big exchange: writes `size` bytes and reads to the end
// at the same time, from two tasks on one stream.
fiber::Task<> send_all(TcpStream& stream, std::size_t size, std::uint64_t seed, Checksum& sent,
                       Countdown& finished) {
    const auto chunk = pattern(1 << 20, seed);
    for (std::size_t done = 0; done < size; done += chunk.size()) {
        sent.add(chunk);
        co_await stream.write_all(chunk);
    }
    stream.shutdown_write();
    finished.done();
}

fiber::Task<> receive_all(TcpStream& stream, Checksum& received, Countdown& finished) {
    std::vector<std::byte> buffer(256 * 1024);
    while (std::size_t n = co_await stream.read(buffer)) received.add(std::span(buffer).first(n));
    finished.done();
}

}  // namespace

TEST(Tcp, SixtyFourMebibytesEachWayAtOnceOnOneConnection) {
    // Each side writes far more than the socket buffers hold before it
    // reads anything: with one waiter slot per socket, both would block in
    // write and never read. Two slots: a reader and a writer per stream.
    constexpr std::size_t kSize = 64 << 20;
    Checksum sent[2], received[2];
    run_test([&](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        TcpStream server = (co_await listener.accept()).stream;
        Countdown finished(4);
        spawner.spawn(send_all(client, kSize, 1, sent[0], finished));
        spawner.spawn(send_all(server, kSize, 2, sent[1], finished));
        spawner.spawn(receive_all(server, received[0], finished));
        spawner.spawn(receive_all(client, received[1], finished));
        co_await finished.wait();
    });
    for (int side : {0, 1}) {
        EXPECT_EQ(sent[side].bytes, kSize);
        EXPECT_EQ(received[side].bytes, kSize);
        EXPECT_EQ(received[side].value, sent[side].value);
    }
}

TEST(Tcp, HalfCloseLetsTheServerReplyAfterEndOfStream) {
    run_test([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        auto server = [](TcpListener& listener) -> fiber::Task<> {
            TcpStream stream = (co_await listener.accept()).stream;
            std::string request = co_await read_to_end(stream);  // until the client's shutdown
            co_await stream.write_all(bytes("got " + request + ", bye"));
        };
        spawner.spawn(server(listener));
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        co_await client.write_all(bytes("ping"));
        client.shutdown_write();
        EXPECT_EQ(co_await read_to_end(client), "got ping, bye");
    });
}

TEST(Tcp, ASecondConcurrentReadIsALogicError) {
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        TcpStream server = (co_await listener.accept()).stream;
        std::string first;
        Countdown read_done(1);
        auto reader = [](TcpStream& s, std::string& out, Countdown& done) -> fiber::Task<> {
            out = co_await read_exactly(s, 2);
            done.done();
        };
        spawner.spawn(reader(client, first, read_done));
        co_await fiber::yield_now();  // the reader waits: nothing was sent
        std::byte buffer[8];
        EXPECT_THROW((void)co_await client.read(buffer), std::logic_error);
        co_await server.write_all(bytes("ok"));
        co_await read_done.wait();
        EXPECT_EQ(first, "ok");
    });
}

TEST(Tcp, ASecondConcurrentWriteIsALogicError) {
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        TcpStream server = (co_await listener.accept()).stream;
        // More than both sockets' buffers hold: the writer waits for the reader.
        const std::vector<std::byte> big = pattern(16 << 20, 7);
        Countdown write_done(1);
        auto writer = [](TcpStream& s, const std::vector<std::byte>& data,
                         Countdown& done) -> fiber::Task<> {
            co_await s.write_all(data);
            done.done();
        };
        spawner.spawn(writer(client, big, write_done));
        co_await fiber::yield_now();  // the writer fills the buffers and waits
        EXPECT_THROW((void)co_await client.write(bytes("x")), std::logic_error);
        const std::string back = co_await read_exactly(server, big.size());
        co_await write_done.wait();
        EXPECT_TRUE(back.size() == big.size() &&
                    std::equal(big.begin(), big.end(), back.begin(),
                               [](std::byte b, char c) { return b == std::byte(c); }));
    });
}

TEST(Tcp, TwoHundredClientsTwentyRoundTripsEach) {
    constexpr int kClients = 200, kRounds = 20;
    std::atomic<int> errors = 0, good = 0;  // the clients run on several workers
    run_test([&](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        const auto address = listener.local_address();
        spawner.spawn(echo_server(std::move(listener), spawner));
        Countdown finished(kClients);
        auto client = [](fiber::SocketAddress to, int id, std::atomic<int>& good,
                         std::atomic<int>& errors, Countdown& finished) -> fiber::Task<> {
            try {
                TcpStream stream = co_await TcpStream::connect(to);
                for (int round = 0; round < kRounds; ++round) {
                    // 1 byte to about 4 KiB: some echoes take several reads.
                    auto message = pattern(1 + (id * 97 + round * 31) % 4000, id * 1000 + round);
                    co_await stream.write_all(message);
                    std::string back = co_await read_exactly(stream, message.size());
                    Checksum want, got;
                    want.add(message);
                    got.add(bytes(back));
                    (want.value == got.value && want.bytes == got.bytes ? good : errors) += 1;
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << "client " << id << ": " << e.what();
                ++errors;
            }
            finished.done();
        };
        for (int id = 0; id < kClients; ++id) {
            spawner.spawn(client(address, id, good, errors, finished));
        }
        co_await finished.wait();
    });
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(good, kClients * kRounds);
}
