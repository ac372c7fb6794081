// sleep_for(d): suspend the calling task for at least d. At this stage a
// sleep costs an OS thread (fiber/thread_timer.hpp); chapter 4 moves timers
// into a reactor.
#pragma once

#include <chrono>

#include "fiber/thread_timer.hpp"

namespace fiber {

/// `co_await fiber::sleep_for(100ms);`
template <typename Rep, typename Period>
ThreadSleep sleep_for(std::chrono::duration<Rep, Period> d) {
    return thread_sleep_for(d);
}

}  // namespace fiber
