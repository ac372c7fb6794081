// sleep_for on a thread per timer: never early, in deadline order,
// overlapping, and cancelled cleanly when its frame is destroyed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ratio>
#include <typeinfo>
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

namespace {

// deadline_after(d) must be d from the moment it is called, rounded up to
// the clock's tick: between `before + d` and `after + d`, where before and
// after bracket the call. `nanos` is d in nanoseconds, written out by hand.
template <typename Rep, typename Period>
void expect_deadline(std::chrono::duration<Rep, Period> d, Clock::duration nanos) {
    const Clock::time_point before = Clock::now();
    const Clock::time_point deadline = fiber::detail::deadline_after(d);
    const Clock::time_point after = Clock::now();
    EXPECT_GE(deadline, before + nanos) << typeid(Rep).name() << " " << d.count();
    EXPECT_LE(deadline, after + nanos) << typeid(Rep).name() << " " << d.count();
}

template <typename Rep, typename Period>
void expect_never(std::chrono::duration<Rep, Period> d) {
    EXPECT_EQ(fiber::detail::deadline_after(d), Clock::time_point::max()) << typeid(Rep).name();
}

}  // namespace

TEST(Sleep, EveryDurationTypeGivesTheRightDeadline) {
    using std::chrono::duration;
    // Narrow integers: the limit must not be converted into them (it wraps).
    expect_deadline(duration<std::int32_t, std::nano>(1ms), 1ms);
    expect_deadline(duration<std::int16_t, std::milli>(1000), 1s);
    expect_deadline(duration<std::int8_t>(3), 3s);
    expect_deadline(duration<std::uint32_t, std::micro>(1500), 1500us);
    expect_deadline(duration<std::int32_t, std::milli>(2'000'000'000), 2'000'000'000ms);
    // Wide and unsigned integers, and a unit finer than the clock's.
    expect_deadline(duration<std::uint64_t, std::nano>(7), 7ns);
    expect_deadline(duration<long long, std::pico>(1'500), 2ns);  // rounded up
    expect_deadline(std::chrono::hours(2), 2h);
    // Floating point, rounded up to the next nanosecond.
    expect_deadline(duration<double, std::milli>(1.5), 1500us);
    expect_deadline(duration<float>(0.25f), 250ms);
    expect_deadline(duration<long double, std::nano>(2.5L), 3ns);
    // Too long for the clock: the last instant, never an overflow.
    expect_never(std::chrono::hours::max());
    expect_never(duration<std::uint64_t, std::nano>::max());
    expect_never(duration<std::int32_t, std::ratio<31556952>>::max());  // int32 years
    expect_never(duration<float, std::ratio<3600>>::max());
    expect_never(duration<double>(std::numeric_limits<double>::infinity()));
    // Zero and negative: now, whatever the type.
    expect_deadline(duration<std::int8_t>(-1), 0ns);
    expect_deadline(duration<std::uint16_t>(0), 0ns);
    expect_deadline(duration<double>(-0.5), 0ns);
}

TEST(Sleep, ANarrowDurationSleepsAndEnds) {
    // Converted into these types, the room left on the clock wrapped, and
    // each sleep had about even odds of lasting for ever.
    auto nap = []() -> fiber::Task<int> {
        co_await fiber::sleep_for(std::chrono::duration<std::int32_t, std::nano>(1ms));
        co_await fiber::sleep_for(std::chrono::duration<std::int16_t, std::milli>(1));
        co_await fiber::sleep_for(std::chrono::duration<std::uint32_t, std::micro>(500));
        co_await fiber::sleep_for(std::chrono::duration<std::int32_t, std::micro>(500));
        co_await fiber::sleep_for(std::chrono::duration<float, std::milli>(1.0f));
        co_return 1;
    };
    EXPECT_EQ(fiber::block_on(nap()), 1);
}
