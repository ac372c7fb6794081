// Cancel safety: a read or an accept that select, join or timeout cancel
// loses nothing. Every byte sent is returned by a read that won or by a
// later read; every connection by an accept that won or by a later one.
// With several workers a losing branch may finish on one worker while the
// winner finishes on another: these tests make that race happen thousands
// of times.
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#ifdef _WIN32
#include <winsock2.h>
#else
#include <sys/ioctl.h>
#endif

#include "fiber/join.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/select.hpp"
#include "fiber/tcp.hpp"
#include "fiber/timeout.hpp"
#include "fiber/yield.hpp"
#include "stream_pair.hpp"
#include "tcp_helpers.hpp"
#include "watchdog.hpp"

using namespace std::chrono_literals;
using fiber::Task;
using fiber::TcpStream;

namespace {

constexpr std::size_t kStreamBytes = 1 << 20;
constexpr int kRaces = 3000;

// The n-th byte of the stream the writer sends: a lost or repeated chunk
// shows as a wrong byte, not only as a wrong total.
std::byte nth_byte(std::size_t n) { return static_cast<std::byte>(n % 251); }

Task<> send_the_stream(TcpStream& to) {
    std::vector<std::byte> all(kStreamBytes);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = nth_byte(i);
    co_await to.write_all(all);
    to.shutdown_write();
}

// A branch that finishes as soon as it runs: it wins about as often as the
// read, and on several workers at the same moment as the read.
Task<int> finishes_at_once() {
    co_await fiber::yield_now();
    co_return 0;
}

// Checks the bytes a read gave against the stream's order; counts them.
struct Received {
    std::size_t total = 0;
    std::size_t wrong = 0;
    void add(std::span<const std::byte> got) {
        for (std::byte b : got) wrong += b != nth_byte(total++);
    }
};

// What is left after the races: plain reads until end of stream.
Task<> read_the_rest(TcpStream& from, Received& received) {
    std::byte buffer[4096];
    while (std::size_t n = co_await from.read(buffer)) received.add(std::span(buffer, n));
}

TEST(CancelSafety, ASelectThatLosesAReadLosesNoBytes) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        auto [a, b] = co_await connected_pair();
        auto writer = fiber::spawn(send_the_stream(a));
        Received received;
        int reads_won = 0;
        for (int i = 0; i < kRaces; ++i) {
            std::byte buffer[512];
            auto first = co_await fiber::select(finishes_at_once(), b.read(buffer));
            if (first.index() == 1) {
                ++reads_won;
                std::size_t n = std::get<1>(first);
                received.add(std::span(buffer, n));
                if (n == 0) break;  // the whole stream came through the races
            }
        }
        co_await read_the_rest(b, received);
        co_await writer;
        EXPECT_EQ(received.total, kStreamBytes) << reads_won << " reads won";
        EXPECT_EQ(received.wrong, 0u);
    });
}

TEST(CancelSafety, ATimedOutReadLosesNoBytes) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        auto [a, b] = co_await connected_pair();
        auto writer = fiber::spawn(send_the_stream(a));
        Received received;
        for (int i = 0; i < kRaces; ++i) {
            std::byte buffer[512];
            try {
                std::size_t n = co_await fiber::timeout(0ms, b.read(buffer));
                received.add(std::span(buffer, n));
                if (n == 0) break;
            } catch (const fiber::TimedOut&) {
            }
        }
        co_await read_the_rest(b, received);
        co_await writer;
        EXPECT_EQ(received.total, kStreamBytes);
        EXPECT_EQ(received.wrong, 0u);
    });
}

// Bytes the kernel holds for a read on `s`.
std::size_t bytes_waiting(fiber::common::native_handle s) {
#ifdef _WIN32
    u_long n = 0;
    if (::ioctlsocket(s, FIONREAD, &n) != 0) throw std::runtime_error("ioctlsocket FIONREAD");
#else
    int n = 0;
    if (::ioctl(s, FIONREAD, &n) != 0) throw std::runtime_error("ioctl FIONREAD");
#endif
    return static_cast<std::size_t>(n);
}

// Fails once the read beside it has taken the bytes from the socket: the
// join then drops the read's count, and the bytes must come back.
Task<int> fails_once_read(const TcpStream& stream) {
    while (bytes_waiting(stream.handle()) > 0) co_await fiber::yield_now();
    throw std::runtime_error("the other branch failed");
}

TEST(CancelSafety, AFailedJoinGivesBackTheBytesItsReadTook) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        auto [a, b] = co_await connected_pair();
        co_await a.write_all(bytes("hello"));
        while (bytes_waiting(b.handle()) < 5) co_await fiber::yield_now();
        std::byte buffer[16];
        EXPECT_THROW((void)co_await fiber::join(b.read(buffer), fails_once_read(b)),
                     std::runtime_error);
        std::string again;
        try {
            again = co_await fiber::timeout(5s, read_exactly(b, 5));
        } catch (const fiber::TimedOut&) {
        }
        EXPECT_EQ(again, "hello");
    });
}

TEST(CancelSafety, ASelectThatLosesAnAcceptClosesNoConnection) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        constexpr int kConnections = 200;
        auto listener = fiber::TcpListener::bind("127.0.0.1:0");
        // Every connection is set up by the kernel before any accept.
        std::vector<TcpStream> clients;
        for (int i = 0; i < kConnections; ++i) {
            clients.push_back(co_await TcpStream::connect(listener.local_address()));
        }
        std::vector<fiber::Accepted> accepted;
        for (int i = 0; i < kRaces && accepted.size() < kConnections; ++i) {
            auto first = co_await fiber::select(finishes_at_once(), listener.accept());
            if (first.index() == 1) accepted.push_back(std::get<1>(std::move(first)));
        }
        // The rest, each within a generous bound: a connection that a
        // loser closed never comes, and the count stays short.
        try {
            while (accepted.size() < kConnections) {
                accepted.push_back(co_await fiber::timeout(5s, listener.accept()));
            }
        } catch (const fiber::TimedOut&) {
        }
        EXPECT_EQ(accepted.size(), std::size_t{kConnections});
        // And each is open: a byte sent on it reaches its client.
        for (std::size_t i = 0; i < accepted.size(); ++i) {
            co_await accepted[i].stream.write_all(bytes("x"));
        }
        int open = 0;
        for (TcpStream& client : clients) {
            char c = 0;
            try {
                if (co_await fiber::timeout(
                        5s, client.read(std::as_writable_bytes(std::span(&c, 1)))) == 1) {
                    ++open;
                }
            } catch (const std::exception&) {
            }
        }
        EXPECT_EQ(open, kConnections);
    });
}

Task<int> forty_one_and_one() {
    co_await fiber::yield_now();
    co_return 42;
}

TEST(CancelSafety, ATimedOutAwaitOfAHeldJoinHandleKeepsTheValue) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        int timed_out = 0;
        for (int i = 0; i < kRaces; ++i) {
            auto handle = fiber::spawn(forty_one_and_one());
            // Polling with a zero timeout: the task may finish as the
            // timeout wins, on another worker. Its value must stay in the
            // handle for the next await (which would say "taken already").
            for (;;) {
                try {
                    EXPECT_EQ(co_await fiber::timeout(0ms, handle), 42);
                    break;
                } catch (const fiber::TimedOut&) {
                    ++timed_out;
                }
            }
        }
        RecordProperty("timed_out", timed_out);
    });
}

TEST(CancelSafety, ATimedOutWriteAllSaysHowMuchItSent) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        auto [a, b] = co_await connected_pair();
        // Far more than the two socket buffers hold: nobody reads yet, so
        // the write stalls part way.
        std::vector<std::byte> data(64 << 20, std::byte{7});
        std::size_t sent = 0;
        EXPECT_THROW(co_await fiber::timeout(100ms, a.write_all(data, sent)), fiber::TimedOut);
        EXPECT_GT(sent, 0u);
        EXPECT_LT(sent, data.size());
        a.close();
        std::byte buffer[65536];
        std::size_t total = 0;
        while (std::size_t n = co_await b.read(buffer)) total += n;
        EXPECT_EQ(total, sent);
    });
}

}  // namespace
