// The executor polls the reactor itself: before it sleeps, and every so
// often while it works. These tests keep its queue from ever running dry
// and check that I/O and timers are still served.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>

#include "common/os.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/block_on.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"
#include "fiber/yield.hpp"

#ifndef _WIN32
#include <unistd.h>
#endif

namespace {

using namespace std::chrono_literals;

void write_one_byte(fiber::common::native_handle h) {
    const char byte = 'x';
#ifdef _WIN32
    ASSERT_EQ(::send(h, &byte, 1, 0), 1);
#else
    ASSERT_EQ(::write(h, &byte, 1), 1);
#endif
}

// Yields until `done`, or until it has yielded `limit` times: the count,
// or nullopt if it gave up. A yield puts the task at the back of the
// queue at once, so while it spins the queue is never empty. `done` is
// atomic: with several workers, the task that sets it runs on another.
fiber::Task<std::optional<long>> spin_until(const std::atomic<bool>& done, long limit) {
    for (long yields = 0; yields < limit; ++yields) {
        if (done) co_return yields;
        co_await fiber::yield_now();
    }
    co_return std::nullopt;
}

TEST(ExecutorPoll, AQueueThatNeverRunsDryStillServesIo) {
    auto [reader, writer] = fiber::common::make_pipe();
    std::atomic<bool> done = false;
    std::optional<long> yields;
    auto read_one = [](fiber::common::native_handle r, std::atomic<bool>& done) -> fiber::Task<> {
        fiber::AsyncFd in(r);
        std::byte buffer[8];
        co_await in.read(buffer);  // waits: nothing written yet
        done = true;
    };
    auto spin = [](fiber::common::native_handle w, const std::atomic<bool>& done,
                   std::optional<long>& yields) -> fiber::Task<> {
        write_one_byte(w);  // the reader waits by now: it ran first
        yields = co_await spin_until(done, 1'000'000);
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(read_one(reader, done));
        spawner.spawn(spin(writer, done, yields));
        executor.run();
    }
    fiber::common::close_handle(writer);
    ASSERT_TRUE(yields.has_value()) << "a million yields, and the reader never woke";
    EXPECT_TRUE(done);
}

TEST(ExecutorPoll, ATimerFiresWhileTheQueueNeverRunsDry) {
    std::atomic<bool> done = false;
    std::optional<long> yields;
    auto sleeper = [](std::atomic<bool>& done) -> fiber::Task<> {
        co_await fiber::sleep_for(1ms);
        done = true;
    };
    auto spin = [](const std::atomic<bool>& done, std::optional<long>& yields) -> fiber::Task<> {
        // Long enough for a millisecond on a loaded machine: the limit
        // is for a hang, not a measure of speed.
        yields = co_await spin_until(done, 100'000'000);
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(sleeper(done));
        spawner.spawn(spin(done, yields));
        executor.run();
    }
    ASSERT_TRUE(yields.has_value()) << "the sleep never ended while the queue was busy";
    EXPECT_TRUE(done);
}

}  // namespace
