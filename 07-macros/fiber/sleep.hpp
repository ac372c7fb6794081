// sleep_for(d): suspend the calling task for at least d. The timer lives in
// the reactor's heap, and the reactor thread's poll timeout is the nearest
// deadline: a pending sleep costs no thread and no allocation. The thread
// per timer of the previous stage stays in fiber/thread_timer.hpp, for
// comparison. A stop request for the task cuts the sleep short.
#pragma once

#include <chrono>
#include <coroutine>
#include <memory>
#include <optional>

#include "fiber/budget.hpp"
#include "fiber/cancel.hpp"
#include "fiber/reactor.hpp"
#include "fiber/stop_state.hpp"
#include "fiber/thread_timer.hpp"

namespace fiber {

/// The awaiter of sleep_for(). Destroying it while it waits (its frame is
/// destroyed) removes the timer: once the destructor has returned, the
/// reactor never touches it again. If the timer fired just before, its wake
/// is already on its way; that is why an executor destroys waiting frames
/// only after its reactor has stopped. A stop request for the task ends
/// the sleep at once with fiber::Cancelled. If the reactor's poller fails,
/// the sleep ends at once with the poller's error (std::system_error).
class Sleep {
public:
    explicit Sleep(std::chrono::steady_clock::time_point deadline) : deadline_(deadline) {}
    // Movable before it is awaited, as a Task is (timeout and select take
    // a sleep by value): the move copies the deadline, nothing else. An
    // awaited Sleep is never moved from: the reactor's heap and the stop
    // state point into it, and the new object would not be registered.
    Sleep(Sleep&& other) noexcept : deadline_(other.deadline_) {}
    Sleep& operator=(Sleep&&) = delete;
    ~Sleep() {
        // First: waits out a stop callback running on another thread, which
        // still uses timer_. No lock is held here, so it can finish.
        stop_.reset();
        if (reactor_) reactor_->cancel_timer(timer_);
    }

    bool await_ready() noexcept {
        if (this_task::stop_requested()) {
            timer_.cancelled = true;  // nobody else sees the entry yet
            return true;
        }
        // Due already: no wait, but one unit of the task's budget (a loop
        // of zero sleeps would otherwise never let another task run).
        due_ = std::chrono::steady_clock::now() >= deadline_;
        return due_ && detail::spend_budget();
    }
    bool await_suspend(std::coroutine_handle<> self) {
        Waker waker = current_waker(self);
        if (due_) {  // the budget is spent: yield instead of waiting
            std::move(waker).wake();
            return true;
        }
        reactor_ = detail::current_reactor();
        timer_.deadline = deadline_;
        // Registered before the timer is queued, not after: once it is, the
        // reactor may wake us on another worker, which may destroy *this.
        // A request that comes in between finds no timer, marks the entry,
        // and add_timer() refuses it.
        if (detail::StopState* stop = detail::current_stop_state()) {
            stop_.emplace(stop, Interrupt{this});
        }
        // Publishes the waker: from here on the reactor may fire it, so
        // nothing after this line may touch *this.
        return reactor_->add_timer(timer_, std::move(waker));
    }
    void await_resume() {
        // After reset() no callback runs or will run: timer_.cancelled,
        // written under the reactor's lock, is settled and visible to us.
        stop_.reset();
        // due_: the sleep did not wait (or only yielded). A stop request
        // that came meanwhile ends it as it would have ended a wait.
        if (timer_.cancelled || (due_ && this_task::stop_requested())) throw Cancelled();
        // Woken before the deadline by a failing poller: its error.
        if (timer_.failed) reactor_->rethrow_failure();
    }

private:
    struct Interrupt {
        Sleep* self;  // the callback is a member: destroyed before *self
        void operator()() const noexcept { self->reactor_->interrupt_timer(self->timer_); }
    };

    std::chrono::steady_clock::time_point deadline_;
    bool due_ = false;  // the deadline had passed when the sleep began
    detail::TimerEntry timer_;
    std::shared_ptr<detail::Reactor> reactor_;  // shared: alive for ~Sleep, whenever it runs
    std::optional<detail::StopCallback<Interrupt>> stop_;
};

/// `co_await fiber::sleep_for(100ms);` A duration too long for the clock
/// sleeps for ever; zero or negative does not wait (but yields once the
/// task has spent its budget: fiber/budget.hpp).
template <typename Rep, typename Period>
Sleep sleep_for(std::chrono::duration<Rep, Period> d) {
    return Sleep(detail::deadline_after(d));
}

}  // namespace fiber
