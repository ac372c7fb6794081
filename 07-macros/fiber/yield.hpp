// yield_now(): step aside and let every other ready task run once. On one
// thread it was the smallest awaiter built on a Waker; with workers it
// needs none: a Waker is counted in a count all workers share, and a yield
// is the one suspension that is sure to wake itself at once.
#pragma once

#include <coroutine>

namespace fiber {

namespace detail {
// Marks the running task to run again after the other ready tasks, to
// resume at `h` (executor.cpp). Throws outside Executor::run().
void yield_current(std::coroutine_handle<> h);
}  // namespace detail

struct YieldAwaiter {
    bool await_ready() noexcept { return false; }
    // We go to the back of the ready queue. Once this returns, the worker
    // may hand the task to another worker, so nothing here may touch the
    // frame any more.
    void await_suspend(std::coroutine_handle<> self) { detail::yield_current(self); }
    void await_resume() noexcept {}
};

/// `co_await fiber::yield_now();` lets the other ready tasks run first.
inline YieldAwaiter yield_now() noexcept { return {}; }

}  // namespace fiber
