// Waker: the right to put one suspended coroutine back on its executor's
// ready queue, exactly once. Rust polls a future again and again; C++
// resumes a suspended coroutine once per suspension, and resuming it twice
// is undefined behaviour. So a Waker cannot be copied, and wake() uses it up.
// The executor counts the Wakers alive: while one exists, a task may still
// become ready, so run() waits instead of returning. That count also keeps
// the executor's state alive: a Waker may outlive the Executor, even on
// another thread, and waking it then does nothing.
#pragma once

#include <coroutine>
#include <utility>

namespace fiber {

namespace detail {
class Reactor;
class Scheduler;
}  // namespace detail

/// Move-only handle to one suspended coroutine. `std::move(w).wake()`
/// enqueues the coroutine on the executor it belongs to and empties `w`.
class Waker {
public:
    Waker() noexcept = default;
    Waker(detail::Scheduler& scheduler, std::coroutine_handle<> handle);
    ~Waker();  // an unused waker tells its executor that it is gone

    Waker(Waker&& other) noexcept
        : scheduler_(std::exchange(other.scheduler_, nullptr)),
          handle_(std::exchange(other.handle_, {})) {}
    Waker& operator=(Waker&& other) noexcept;
    Waker(const Waker&) = delete;
    Waker& operator=(const Waker&) = delete;

    /// Schedules the coroutine to run again, or does nothing if its
    /// Executor is gone; safe from any thread. Throws std::logic_error on an
    /// empty waker: a second wake would resume the coroutine twice. If it
    /// throws (std::bad_alloc from the queue), the waker is left as it was.
    void wake() &&;

    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    // Counted, not borrowed: the Scheduler counts every Waker alive and is
    // deleted only when no Waker, Executor or Spawner is left, so this
    // pointer never dangles, whichever thread holds the Waker.
    // The reactor asks whose task a Waker wakes: only its own executor's
    // tasks give that executor work (see Reactor::take_turn()).
    friend class detail::Reactor;
    detail::Scheduler* scheduler_ = nullptr;
    std::coroutine_handle<> handle_;
};

/// The waker for coroutine `h` on the executor running on this thread.
/// Awaiters call it from await_suspend. Throws outside Executor::run().
Waker current_waker(std::coroutine_handle<> h);

}  // namespace fiber
