// yield_now(): step aside and let every other ready task run once. The
// smallest possible awaiter built on a Waker.
#pragma once

#include <coroutine>

#include "fiber/waker.hpp"

namespace fiber {

struct YieldAwaiter {
    bool await_ready() noexcept { return false; }
    // Wake ourselves at once: we go to the back of the ready queue. After
    // wake() this coroutine belongs to the queue, so nothing here may touch
    // the frame any more (later chapters resume it on another thread).
    void await_suspend(std::coroutine_handle<> self) { std::move(current_waker(self)).wake(); }
    void await_resume() noexcept {}
};

/// `co_await fiber::yield_now();` lets the other ready tasks run first.
inline YieldAwaiter yield_now() noexcept { return {}; }

}  // namespace fiber
