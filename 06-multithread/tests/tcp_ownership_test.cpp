// What a pending TCP operation holds on to, and what it costs: an accept or
// a write_all whose listener or stream is destroyed under it fails with
// operation_canceled, one whose listener or stream is moved goes on, and
// neither touches the freed object (AddressSanitizer checks). A read or a
// write is one coroutine frame.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "common/testing/fail_alloc.hpp"
#include "fiber/tcp.hpp"
#include "fiber/yield.hpp"
#include "tcp_helpers.hpp"

#ifndef _WIN32
#include <fcntl.h>
#endif

using fiber::TcpListener;
using fiber::TcpStream;

TEST(TcpOwnership, DestroyingTheListenerWhileAcceptWaitsFailsTheAccept) {
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        // On the heap, not in this frame: AddressSanitizer sees a read of
        // it after delete, but not of a destroyed object in live memory.
        auto listener = std::make_unique<TcpListener>(TcpListener::bind("127.0.0.1:0"));
        const std::string address = listener->local_address().to_string();
        std::optional<std::system_error> failure;
        Countdown finished(1);
        auto acceptor = [](TcpListener& listener, std::optional<std::system_error>& failure,
                           Countdown& finished) -> fiber::Task<> {
            try {
                (void)co_await listener.accept();
                ADD_FAILURE() << "accepted, and nobody connected";
            } catch (const std::system_error& e) {
                failure = e;
            }
            finished.done();
        };
        spawner.spawn(acceptor(*listener, failure, finished));
        co_await fiber::yield_now();  // the acceptor runs until it waits
        listener.reset();             // a server shutting down
        co_await finished.wait();
        if (!failure) {
            ADD_FAILURE() << "the accept did not fail";
            co_return;
        }
        EXPECT_EQ(failure->code(), std::errc::operation_canceled) << failure->what();
        EXPECT_TRUE(mentions(*failure, "accept " + address)) << failure->what();
    });
}

TEST(TcpOwnership, DestroyingTheStreamWhileWriteAllWaitsFailsTheWrite) {
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream not_reading = co_await TcpStream::connect(listener.local_address());
        auto stream = std::make_unique<TcpStream>((co_await listener.accept()).stream);
        const std::string peer = stream->peer_address().to_string();
        std::optional<std::system_error> failure;
        Countdown finished(1);
        auto writer = [](TcpStream& stream, std::optional<std::system_error>& failure,
                         Countdown& finished) -> fiber::Task<> {
            // Far more than loopback's socket buffers hold (Linux: a few
            // MiB each way), so write_all must wait for a reader that never
            // comes.
            const std::vector<std::byte> data(32 << 20);
            try {
                co_await stream.write_all(data);
                ADD_FAILURE() << "a client that never reads took 32 MiB";
            } catch (const std::system_error& e) {
                failure = e;
            }
            finished.done();
        };
        spawner.spawn(writer(*stream, failure, finished));
        // One worker runs every task: when this one runs again, the writer
        // is suspended, and write_all has only one place to suspend.
        co_await fiber::yield_now();
        stream.reset();
        co_await finished.wait();
        if (!failure) {
            ADD_FAILURE() << "the write did not fail";
            co_return;
        }
        EXPECT_EQ(failure->code(), std::errc::operation_canceled) << failure->what();
        EXPECT_TRUE(mentions(*failure, "write " + peer)) << failure->what();
    });
}

TEST(TcpOwnership, ClosingAStreamKeepsItsDescriptorUntilTheReadAndWriteInFlightReturn) {
#ifdef _WIN32
    GTEST_SKIP() << "checks the descriptor with fcntl()";
#else
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream not_reading = co_await TcpStream::connect(listener.local_address());
        auto stream = std::make_unique<TcpStream>((co_await listener.accept()).stream);
        const int handle = stream->handle();
        std::vector<std::string> canceled;
        Countdown finished(2);
        auto reader = [](TcpStream& stream, std::vector<std::string>& canceled,
                         Countdown& finished) -> fiber::Task<> {
            std::byte buffer[16];
            try {
                (void)co_await stream.read(buffer);  // nothing is sent
            } catch (const std::system_error& e) {
                if (e.code() == std::errc::operation_canceled) canceled.push_back("read");
            }
            finished.done();
        };
        auto writer = [](TcpStream& stream, std::vector<std::string>& canceled,
                         Countdown& finished) -> fiber::Task<> {
            const std::vector<std::byte> data(32 << 20);  // more than the buffers hold
            try {
                co_await stream.write_all(data);
            } catch (const std::system_error& e) {
                if (e.code() == std::errc::operation_canceled) canceled.push_back("write");
            }
            finished.done();
        };
        spawner.spawn(reader(*stream, canceled, finished));
        spawner.spawn(writer(*stream, canceled, finished));
        co_await fiber::yield_now();  // one worker runs every task: both wait
        stream->close();
        // Had close() freed the number here, an operation that another
        // thread had just woken, about to call read() or send(), would use
        // whatever file is given the number next.
        EXPECT_NE(::fcntl(handle, F_GETFD), -1) << "closed while a read and a write used it";
        co_await finished.wait();
        std::sort(canceled.begin(), canceled.end());  // in whichever order they ran
        EXPECT_EQ(canceled, (std::vector<std::string>{"read", "write"}));
        EXPECT_EQ(::fcntl(handle, F_GETFD), -1) << "still open once both failed";
    });
#endif
}

TEST(TcpOwnership, MovingTheListenerWhileAcceptWaitsKeepsTheAccept) {
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = std::make_unique<TcpListener>(TcpListener::bind("127.0.0.1:0"));
        std::optional<fiber::SocketAddress> accepted;
        Countdown finished(1);
        auto acceptor = [](TcpListener& listener, std::optional<fiber::SocketAddress>& accepted,
                           Countdown& finished) -> fiber::Task<> {
            accepted = (co_await listener.accept()).peer;
            finished.done();
        };
        spawner.spawn(acceptor(*listener, accepted, finished));
        co_await fiber::yield_now();  // the acceptor waits: nobody connected yet
        TcpListener moved = std::move(*listener);
        listener.reset();  // the object accept() was called on is gone
        TcpStream client = co_await TcpStream::connect(moved.local_address());
        co_await finished.wait();
        EXPECT_TRUE(accepted && accepted->to_string().starts_with("127.0.0.1:"));
    });
}

TEST(TcpOwnership, MovingTheStreamWhileWriteAllWaitsKeepsWriting) {
    constexpr std::size_t kSize = 32 << 20;
    Checksum received, sent;
    run_on_one_worker([&](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        auto first = std::make_unique<TcpStream>((co_await listener.accept()).stream);
        const std::vector<std::byte> data = pattern(kSize, 3);
        sent.add(data);
        Countdown finished(1);
        auto writer = [](TcpStream& stream, std::span<const std::byte> data,
                         Countdown& finished) -> fiber::Task<> {
            co_await stream.write_all(data);  // waits: nobody reads yet
            finished.done();
        };
        spawner.spawn(writer(*first, data, finished));
        co_await fiber::yield_now();
        TcpStream moved = std::move(*first);
        first.reset();
        std::vector<std::byte> buffer(256 * 1024);
        while (received.bytes < kSize) {
            std::size_t n = co_await client.read(buffer);
            if (n == 0) break;
            received.add(std::span(buffer).first(n));
        }
        co_await finished.wait();
    });
    EXPECT_EQ(received.bytes, kSize);
    EXPECT_EQ(received.value, sent.value);
}

TEST(TcpOwnership, MovingAStreamWhileAReadWaitsKeepsTheRead) {
    run_on_one_worker([](fiber::Spawner spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        auto first = std::make_unique<TcpStream>((co_await listener.accept()).stream);
        std::string got;
        Countdown finished(1);
        // The read in flight holds the socket's registration, not the
        // stream: it finishes after the stream has moved and the old object
        // is freed. (read_exactly would not: it reads the stream again.)
        auto one_read = [](TcpStream& stream, std::string& got,
                           Countdown& finished) -> fiber::Task<> {
            std::byte buffer[16];
            std::size_t n = co_await stream.read(buffer);
            got.assign(reinterpret_cast<const char*>(buffer), n);
            finished.done();
        };
        spawner.spawn(one_read(*first, got, finished));
        co_await fiber::yield_now();  // the read waits: nothing was sent
        TcpStream moved = std::move(*first);
        first.reset();
        co_await client.write_all(bytes("hello"));
        co_await finished.wait();
        EXPECT_EQ(got, "hello");
        co_await moved.write_all(bytes("back"));
        EXPECT_EQ(co_await read_exactly(client, 4), "back");
    });
}

TEST(TcpOwnership, AReadOrAWriteIsOneCoroutineFrame) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "ThreadSanitizer owns operator new: allocations cannot be limited";
    }
    run_test([](fiber::Spawner) -> fiber::Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        TcpStream server = (co_await listener.accept()).stream;
        std::byte buffer[16];
        std::size_t n = 0;
        co_await client.write_all(bytes("ping"));
        // Ready at once, so nothing waits: the one allocation allowed is
        // the operation's frame. A wrapper coroutine that renamed its
        // errors would be a second, and would throw std::bad_alloc here.
        while (n < 4) {
            fiber::common::FailAllocations one_frame(1);
            n += co_await server.read(std::span(buffer).subspan(n));
        }
        {
            fiber::common::FailAllocations one_frame(1);
            co_await server.write_all(bytes("pong"));
        }
        {
            fiber::common::FailAllocations one_frame(1);
            (void)co_await server.write(bytes("!"));
        }
        EXPECT_EQ(co_await read_exactly(client, 5), "pong!");
    });
}
