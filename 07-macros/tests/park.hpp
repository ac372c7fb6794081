// Test awaiters that suspend and give their waker away: Park hands it to
// the test, which decides when (or whether) the coroutine runs again;
// Abandon drops it, so nothing can ever wake the coroutine.
#pragma once

#include <coroutine>

#include "fiber/waker.hpp"

struct Park {
    fiber::Waker* slot;
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) { *slot = fiber::current_waker(self); }
    void await_resume() noexcept {}
};

struct Abandon {
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) { (void)fiber::current_waker(self); }
    void await_resume() noexcept {}
};
