// Timers in the reactor: in deadline order, never early, by the hundred
// thousand, cancelled cleanly, and destroyed at shutdown.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <random>
#include <vector>

#include "common/testing/fd_count.hpp"
#include "common/testing/live_counter.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/block_on.hpp"
#include "fiber/sleep.hpp"
#include "fiber/yield.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using fiber::common::LiveCounter;

TEST(Reactor, TimersOneMillisecondApartFireInOrder) {
    // The reactor pops every expired timer in (deadline, sequence) order,
    // so even deadlines 1 ms apart come out in order, however late the
    // reactor thread gets to run. The 200 ms head start is for spawning:
    // a sleep whose deadline has passed before it starts does not suspend.
    constexpr int kTimers = 100;
    std::vector<int> ids(kTimers);
    for (int i = 0; i < kTimers; ++i) ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), std::mt19937(42));
    std::vector<int> order;
    auto sleeper = [](Clock::time_point deadline, int id,
                      std::vector<int>& order) -> fiber::Task<> {
        co_await fiber::sleep_for(deadline - Clock::now());
        order.push_back(id);
    };
    const auto start = Clock::now() + 200ms;
    // One worker: the timers fire in order, and tasks run in the order woken.
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    for (int id : ids) spawner.spawn(sleeper(start + id * 1ms, id, order));
    executor.run();
    std::vector<int> expected(kTimers);
    for (int i = 0; i < kTimers; ++i) expected[i] = i;
    EXPECT_EQ(order, expected);
}

TEST(Reactor, HundredThousandConcurrentSleepsComplete) {
    constexpr long kSleeps = 100'000;
    std::atomic<long> done = 0;  // atomic: the naps end on every worker
    std::atomic<long> early = 0;
    auto nap = [](std::atomic<long>& done, std::atomic<long>& early) -> fiber::Task<> {
        auto start = Clock::now();
        co_await fiber::sleep_for(10ms);
        early += Clock::now() - start < 10ms;
        ++done;
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    for (long i = 0; i < kSleeps; ++i) spawner.spawn(nap(done, early));
    executor.run();
    EXPECT_EQ(done, kSleeps);
    EXPECT_EQ(early, 0);
    EXPECT_EQ(fiber::timer_threads_started(), 0u);  // no thread per timer here
}

TEST(Reactor, SleepsExpiringAtShutdownNeverTouchTheDestroyedAwaiters) {
    // Sleeps that expire while, or just before, the executor stops and
    // destroys their frames. (Chapter 4's version suspended sleeps by hand
    // on a no-op coroutine; a Waker now names its task, so a Waker for a
    // coroutine the task is not suspended in would wake the wrong one.)
    // ASan and TSan would report the reactor touching a destroyed awaiter.
    for (int round = 0; round < 20; ++round) {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (int i = 0; i < 200; ++i) {
            spawner.spawn([](int us) -> fiber::Task<> {
                for (;;) co_await fiber::sleep_for(std::chrono::microseconds(us));
            }(i % 50 + 1));  // never 0: a zero sleep does not suspend
        }
        spawner.spawn([](fiber::Executor& e, int us) -> fiber::Task<> {
            co_await fiber::sleep_for(std::chrono::microseconds(us));
            e.stop();
        }(executor, 100 * round));
        executor.run();
    }
}

TEST(Reactor, ShutdownDestroysTasksWaitingOnTimersAndDescriptors) {
    const std::optional<std::size_t> fds_before = fiber::common::open_descriptors();
    auto forever_sleep = []() -> fiber::Task<> {
        LiveCounter alive;
        co_await fiber::sleep_for(1h);
        ADD_FAILURE() << "woke from an hour-long sleep";
    };
    auto forever_read = []() -> fiber::Task<> {
        LiveCounter alive;
        auto [reader, writer] = fiber::common::make_pipe();
        fiber::AsyncFd in(reader);
        fiber::AsyncFd out(writer);  // open, never written: no EOF either
        std::byte buffer[16];
        co_await in.read(buffer);
        ADD_FAILURE() << "read returned from a silent pipe";
    };
    auto stop_later = [](fiber::Executor& executor) -> fiber::Task<> {
        co_await fiber::sleep_for(50ms);
        executor.stop();  // leave run() with twenty tasks still waiting
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (int i = 0; i < 10; ++i) {
            spawner.spawn(forever_sleep());
            spawner.spawn(forever_read());
        }
        spawner.spawn(stop_later(executor));
        executor.run();
        EXPECT_EQ(LiveCounter::live(), 20);
    }
    // The executor stopped its reactor, destroyed the waiting frames, their
    // AsyncFds closed the pipes, and the reactor closed its own handles.
    EXPECT_EQ(LiveCounter::live(), 0);
#ifndef FIBER_LIBKQUEUE  // see common/CMakeLists.txt
    if (!fds_before) GTEST_SKIP() << "cannot count open descriptors here: no leak check";
    EXPECT_EQ(fiber::common::open_descriptors(), fds_before);
#else
    (void)fds_before;
#endif
}

TEST(Reactor, ThreadPerTimerSleepIsStillAvailable) {
    auto t = []() -> fiber::Task<bool> {
        const auto before = fiber::timer_threads_started();
        co_await fiber::thread_sleep_for(5ms);
        co_return fiber::timer_threads_started() == before + 1;
    };
    EXPECT_TRUE(fiber::block_on(t()));
}

TEST(Reactor, SleepOutsideAnExecutorFailsLoudly) {
    auto sleep = fiber::sleep_for(1s);
    EXPECT_THROW(sleep.await_suspend(std::noop_coroutine()), std::logic_error);
}
