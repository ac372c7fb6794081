// sleep on a thread of its own: every pending sleep starts an OS thread that
// waits for the deadline and then wakes the task. This is how the Rust async
// book's TimerFuture works, and it is naive on purpose: chapter 4 replaces it
// with one reactor thread for all timers, and keeps this one for comparison.
#pragma once

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <mutex>
#include <thread>

#include "fiber/waker.hpp"

namespace fiber {

namespace detail {

/// The deadline `d` from now, saturated: a duration longer than the clock
/// can count (duration::max(), hours::max()) gives the clock's last instant,
/// "never", where plain `now + d` overflows into the past and the sleep
/// would end at once. Zero and negative durations give now: no wait. Any
/// duration type works: narrow or wide, signed or not, integer or floating.
template <typename Rep, typename Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point now = Clock::now();
    if (!(d > d.zero())) return now;  // written so: a NaN duration is no wait either
    const Clock::duration room = Clock::time_point::max() - now;
    // Does d fit in the room left? Asked in long double, which holds any
    // duration without overflow. The tempting comparison in integers
    // converts one side into the other's type, and wraps: the room into
    // d's type (int32 nanoseconds: a 1 ms sleep never ended), or d into
    // the clock's (hours::max()).
    const std::chrono::duration<long double, Clock::period> wanted = d;
    if (!(wanted < room)) return Clock::time_point::max();
    // It fits: convert it, rounded up (never early); integers exactly.
    Clock::duration ticks;
    if constexpr (std::chrono::treat_as_floating_point_v<Rep>) {
        ticks = Clock::duration(static_cast<Clock::rep>(std::ceil(wanted.count())));
    } else {
        ticks = std::chrono::ceil<Clock::duration>(d);
    }
    // Where long double is no wider than double, `wanted` was rounded, and
    // ticks may come out a hair past the room: that is "never" too.
    return ticks < room ? now + ticks : Clock::time_point::max();
}

}  // namespace detail

/// The awaiter of thread_sleep_for(). It lives in the sleeping coroutine's
/// frame. Destroying it before the deadline (the frame is destroyed while it
/// sleeps) cancels the timer thread and joins it: no wake ever reaches a
/// destroyed coroutine.
class ThreadSleep {
public:
    explicit ThreadSleep(std::chrono::steady_clock::time_point deadline) : deadline_(deadline) {}
    ThreadSleep(ThreadSleep&&) = delete;
    ~ThreadSleep();

    bool await_ready() const noexcept { return std::chrono::steady_clock::now() >= deadline_; }
    void await_suspend(std::coroutine_handle<> self);
    void await_resume() noexcept {}

private:
    void timer_thread();

    std::chrono::steady_clock::time_point deadline_;
    std::mutex mutex_;  // guards waker_ and cancelled_, shared with the thread
    std::condition_variable cancel_;
    Waker waker_;
    bool cancelled_ = false;
    std::thread thread_;
};

/// `co_await fiber::thread_sleep_for(10ms);` suspends for at least 10 ms,
/// on an OS thread of its own.
template <typename Rep, typename Period>
ThreadSleep thread_sleep_for(std::chrono::duration<Rep, Period> d) {
    return ThreadSleep(detail::deadline_after(d));
}

/// How many timer threads this process has started (for many_timers).
std::size_t timer_threads_started() noexcept;

}  // namespace fiber
