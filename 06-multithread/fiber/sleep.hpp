// sleep_for(d): suspend the calling task for at least d. The timer lives in
// the reactor's heap, and the reactor thread's poll timeout is the nearest
// deadline: a pending sleep costs no thread and no allocation. The thread
// per timer of the previous stage stays in fiber/thread_timer.hpp, for
// comparison.
#pragma once

#include <chrono>
#include <coroutine>
#include <memory>

#include "fiber/budget.hpp"
#include "fiber/reactor.hpp"
#include "fiber/thread_timer.hpp"

namespace fiber {

/// The awaiter of sleep_for(). Destroying it while it waits (its frame is
/// destroyed) removes the timer: once the destructor has returned, the
/// reactor never touches it again. If the timer fired just before, its wake
/// is already on its way; that is why an executor destroys waiting frames
/// only after its reactor has stopped. If the reactor's poller fails, the
/// sleep ends at once with the poller's error (std::system_error).
class Sleep {
public:
    explicit Sleep(std::chrono::steady_clock::time_point deadline) : deadline_(deadline) {}
    Sleep(Sleep&&) = delete;
    ~Sleep() {
        if (reactor_) reactor_->cancel_timer(timer_);
    }

    // Due already: no wait, but one unit of the task's budget (a loop of
    // zero sleeps would otherwise never let another task run).
    bool await_ready() noexcept {
        due_ = std::chrono::steady_clock::now() >= deadline_;
        return due_ && detail::spend_budget();
    }
    void await_suspend(std::coroutine_handle<> self) {
        Waker waker = current_waker(self);
        if (due_) {  // the budget is spent: yield instead of waiting
            std::move(waker).wake();
            return;
        }
        reactor_ = detail::current_reactor();
        timer_.deadline = deadline_;
        // Publishes the waker: from here on the reactor may fire it, so
        // nothing after this line may touch *this.
        reactor_->add_timer(timer_, std::move(waker));
    }
    void await_resume() {
        // Woken before the deadline by a failing poller: its error.
        if (timer_.failed) reactor_->rethrow_failure();
    }

private:
    std::chrono::steady_clock::time_point deadline_;
    bool due_ = false;  // the deadline had passed when the sleep began
    detail::TimerEntry timer_;
    std::shared_ptr<detail::Reactor> reactor_;  // shared: alive for ~Sleep, whenever it runs
};

/// `co_await fiber::sleep_for(100ms);` A duration too long for the clock
/// sleeps for ever; zero or negative does not wait (but yields once the
/// task has spent its budget: fiber/budget.hpp).
template <typename Rep, typename Period>
Sleep sleep_for(std::chrono::duration<Rep, Period> d) {
    return Sleep(detail::deadline_after(d));
}

}  // namespace fiber
