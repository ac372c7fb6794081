// A test awaiter that suspends and hands its waker to the test, which then
// decides when (or whether) the coroutine runs again.
#pragma once

#include <coroutine>

#include "fiber/waker.hpp"

struct Park {
    fiber::Waker* slot;
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) { *slot = fiber::current_waker(self); }
    void await_resume() noexcept {}
};
