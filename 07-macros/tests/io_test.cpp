// I/O readiness through the reactor: reads wait for data, see EOF and
// hang-up, never lose a readiness event, and a reader and a writer can
// wait on one handle at the same time.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/os.hpp"
#include "common/testing/fd_count.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/block_on.hpp"

#ifndef _WIN32
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace {

using fiber::common::native_handle;

// Blocking write from a plain thread (the writing end is not registered).
void write_blocking(native_handle h, const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
#ifdef _WIN32
        int n = ::send(h, data.data() + done, static_cast<int>(data.size() - done), 0);
#else
        ssize_t n = ::write(h, data.data() + done, data.size() - done);
#endif
        ASSERT_GT(n, 0);
        done += static_cast<std::size_t>(n);
    }
}

std::pair<native_handle, native_handle> socket_pair() {
#ifdef _WIN32
    return fiber::common::make_pipe();  // already two connected sockets
#else
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        fiber::common::throw_last_error("socketpair");
    return {fds[0], fds[1]};
#endif
}

fiber::Task<std::string> read_to_end(fiber::AsyncFd& in) {
    std::string all;
    std::byte buffer[4096];
    for (;;) {
        std::size_t n = co_await in.read(buffer);
        if (n == 0) co_return all;
        all.append(reinterpret_cast<const char*>(buffer), n);
    }
}

}  // namespace

TEST(Io, ReadWaitsForDataFromAnotherThread) {
    const auto [reader, writer] = fiber::common::make_pipe();
    std::thread t;
    auto task = [&t, r = reader, w = writer]() -> fiber::Task<std::string> {
        fiber::AsyncFd in(r);
        t = std::thread([w] {
            write_blocking(w, "hello");
            fiber::common::close_handle(w);
        });
        co_return co_await read_to_end(in);
    };
    EXPECT_EQ(fiber::block_on(task()), "hello");
    t.join();
}

TEST(Io, ReadReturnsZeroAtEndOfStream) {
    const auto [reader, writer] = fiber::common::make_pipe();
    fiber::common::close_handle(writer);
    auto task = [r = reader]() -> fiber::Task<std::size_t> {
        fiber::AsyncFd in(r);
        std::byte buffer[8];
        co_return co_await in.read(buffer);
    };
    EXPECT_EQ(fiber::block_on(task()), 0u);
}

TEST(Io, HangupWakesAWaitingReader) {
    // The reader is already waiting when the other end closes.
    const auto [reader, writer] = fiber::common::make_pipe();
    std::thread closer;
    auto task = [&closer, r = reader, w = writer]() -> fiber::Task<std::size_t> {
        fiber::AsyncFd in(r);
        closer = std::thread([w] { fiber::common::close_handle(w); });
        std::byte buffer[8];
        co_return co_await in.read(buffer);
    };
    EXPECT_EQ(fiber::block_on(task()), 0u);
    closer.join();
}

TEST(Io, ReadinessIsNeverLostUnderAStressWriter) {
    // Many small writes racing with the reader's "would block, then wait".
    // A readiness event lost in that window leaves the reader waiting for
    // ever, and CTest's time limit fails the test.
    constexpr int kWrites = 20'000;
    const auto [reader, writer] = fiber::common::make_pipe();
    std::thread t;
    auto task = [&t, r = reader, w = writer]() -> fiber::Task<std::size_t> {
        fiber::AsyncFd in(r);
        t = std::thread([w] {
            for (int i = 0; i < kWrites; ++i) write_blocking(w, "x");
            fiber::common::close_handle(w);
        });
        co_return (co_await read_to_end(in)).size();
    };
    EXPECT_EQ(fiber::block_on(task()), static_cast<std::size_t>(kWrites));
    t.join();
}

TEST(Io, AReaderAndAWriterWaitOnOneSocketAtOnce) {
    // Task R waits to read from `a` while task W writes 4 MiB to `a`, more
    // than the socket buffers hold, so W waits for writability at the same
    // time. A thread drains `b`, then answers "done" and closes, which
    // wakes R. With a single waker slot per handle this would hang.
    constexpr std::size_t kBytes = 4 << 20;
    const auto [a, b] = socket_pair();
    std::thread peer([b = b] {
        std::vector<char> buffer(65536);
        std::size_t got = 0;
        while (got < kBytes) {
            long n = ::recv(b, buffer.data(), static_cast<int>(buffer.size()), 0);
            ASSERT_GT(n, 0);
            got += static_cast<std::size_t>(n);
        }
        write_blocking(b, "done");
        fiber::common::close_handle(b);
    });
    auto reader = [](fiber::AsyncFd& fd, std::string& answer) -> fiber::Task<> {
        answer = co_await read_to_end(fd);
    };
    auto writer = [](fiber::AsyncFd& fd, std::size_t& sent) -> fiber::Task<> {
        std::vector<std::byte> data(kBytes, std::byte{'z'});
        while (sent < data.size()) sent += co_await fd.write(std::span(data).subspan(sent));
    };
    std::optional<fiber::AsyncFd> fd;
    std::string answer;
    std::size_t sent = 0;
    auto start = [&](fiber::Spawner spawner, fiber::common::native_handle h) -> fiber::Task<> {
        fd.emplace(h);  // needs the running executor's reactor
        spawner.spawn(reader(*fd, answer));
        spawner.spawn(writer(*fd, sent));
        co_return;
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(start(spawner, a));
        executor.run();
        fd.reset();  // deregister while the reactor still exists
    }
    peer.join();
    EXPECT_EQ(sent, kBytes);
    EXPECT_EQ(answer, "done");
}

TEST(Io, TwoReadersOnOneHandleFailLoudly) {
    const auto [reader, writer] = fiber::common::make_pipe();
    std::optional<fiber::AsyncFd> in;
    std::string error;
    auto wait_read = [](fiber::AsyncFd& fd, std::string& error) -> fiber::Task<> {
        try {
            std::byte buffer[8];
            co_await fd.read(buffer);
        } catch (const std::logic_error& e) {
            error = e.what();
        }
    };
    auto start = [&, r = reader](fiber::Spawner spawner,
                                 fiber::Executor& executor) -> fiber::Task<> {
        in.emplace(r);
        spawner.spawn(wait_read(*in, error));  // waits: nothing written
        spawner.spawn(wait_read(*in, error));  // a second reader: misuse
        spawner.spawn([](fiber::Executor& e) -> fiber::Task<> {
            e.stop();
            co_return;
        }(executor));
        co_return;
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(start(spawner, executor));
        executor.run();
        in.reset();
    }
    fiber::common::close_handle(writer);
    EXPECT_NE(error.find("two tasks wait to read"), std::string::npos) << error;
}

TEST(Io, AsyncFdOutsideAnExecutorFailsAndClosesTheHandle) {
    const std::optional<std::size_t> before = fiber::common::open_descriptors();
    const auto [reader, writer] = fiber::common::make_pipe();
    EXPECT_THROW(fiber::AsyncFd{reader}, std::logic_error);
    fiber::common::close_handle(writer);
    if (!before) GTEST_SKIP() << "cannot count open descriptors here: no leak check";
    EXPECT_EQ(fiber::common::open_descriptors(), before);
}
