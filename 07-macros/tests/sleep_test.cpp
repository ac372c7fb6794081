// sleep_for on a thread per timer: never early, in deadline order,
// overlapping, and cancelled cleanly when its frame is destroyed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <vector>

#include "fiber/block_on.hpp"
#include "fiber/sleep.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

fiber::Task<> sleep_then_record(Clock::duration d, int id, std::vector<int>& order) {
    co_await fiber::sleep_for(d);
    order.push_back(id);
}

}  // namespace

TEST(Sleep, NeverWakesBeforeItsDeadline) {
    auto timed = []() -> fiber::Task<Clock::duration> {
        auto start = Clock::now();
        co_await fiber::sleep_for(20ms);
        co_return Clock::now() - start;
    };
    EXPECT_GE(fiber::block_on(timed()), 20ms);
}

TEST(Sleep, ZeroOrNegativeDurationDoesNotSuspend) {
    auto t = []() -> fiber::Task<int> {
        co_await fiber::sleep_for(0ms);
        co_await fiber::sleep_for(-5ms);
        co_return 7;
    };
    EXPECT_EQ(fiber::block_on(t()), 7);
}

TEST(Sleep, TasksWakeInDeadlineOrder) {
    // Spawned longest first; deadlines 60 ms apart so that thread start-up
    // jitter cannot reorder them.
    std::vector<int> order;
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    for (int id = 4; id >= 0; --id) spawner.spawn(sleep_then_record(id * 60ms, id, order));
    executor.run();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(Sleep, ConcurrentSleepsOverlap) {
    // Every task must have started sleeping before any of them wakes: the
    // executor does not wait for one sleep to finish before starting the next.
    constexpr int kTasks = 50;
    std::atomic<int> sleeping = 0;  // atomic: the naps run on several workers
    std::atomic<int> most_sleeping = 0;
    std::atomic<int> finished = 0;
    auto nap = [](std::atomic<int>& sleeping, std::atomic<int>& most,
                  std::atomic<int>& finished) -> fiber::Task<> {
        const int now = ++sleeping;
        for (int seen = most; now > seen && !most.compare_exchange_weak(seen, now);) {
        }
        co_await fiber::sleep_for(300ms);
        --sleeping;
        ++finished;
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    for (int i = 0; i < kTasks; ++i) spawner.spawn(nap(sleeping, most_sleeping, finished));
    executor.run();
    EXPECT_EQ(finished, kTasks);
    EXPECT_EQ(most_sleeping, kTasks);
}

TEST(Sleep, DestroyingAPendingSleepCancelsIt) {
    // An hour-long sleep is suspended (by hand, on a coroutine that nobody
    // will resume), then destroyed, as happens when the frame that holds it
    // is destroyed. Were the timer not cancelled, the destructor would wait
    // an hour and CTest's time limit would fail the test.
    auto t = []() -> fiber::Task<bool> {
        auto sleep = fiber::sleep_for(1h);
        sleep.await_suspend(std::noop_coroutine());
        co_return true;  // `sleep` is destroyed here, its deadline far away
    };
    EXPECT_TRUE(fiber::block_on(t()));
}

TEST(Sleep, TheLongestDurationsSleepForEverInsteadOfOverflowing) {
    // now + duration::max() overflows into the past; saturated, it is the
    // clock's last instant, so the sleep does not end at once.
    auto nanos = fiber::sleep_for(std::chrono::nanoseconds::max());
    auto hours = fiber::sleep_for(std::chrono::hours::max());  // overflows on the way to ns
    auto steady = fiber::sleep_for(Clock::duration::max());
    EXPECT_FALSE(nanos.await_ready());
    EXPECT_FALSE(hours.await_ready());
    EXPECT_FALSE(steady.await_ready());
    auto negative = fiber::sleep_for(std::chrono::hours::min());
    EXPECT_TRUE(negative.await_ready());
    auto not_a_number = fiber::sleep_for(std::chrono::duration<double>(std::nan("")));
    EXPECT_TRUE(not_a_number.await_ready());
}
