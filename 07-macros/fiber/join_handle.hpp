// spawn(task) -> JoinHandle<T>: start a task on the runtime that runs the
// caller, and keep a handle to its result and to its stop source. The
// handle and the task share one small state; whichever lets go last frees
// it, so neither can see it freed under it, on whichever worker each runs.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "fiber/cancel.hpp"
#include "fiber/executor.hpp"
#include "fiber/stop_state.hpp"
#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

namespace detail {

// What a spawned task and its JoinHandle share. Two references: the task's
// (held by its frame, so dropped when the frame goes, finished or destroyed
// at shutdown) and the handle's. The last to drop it deletes it.
template <typename T>
class JoinState {
public:
    StopRef stop = StopRef::make();  // the task's stop state; abort() requests it

    void release() noexcept {
        // acq_rel: the other side's writes (the result, the waker slot)
        // happen before the delete, whichever side deletes.
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    // The task ended with `result` set: wake the handle's awaiter, if any.
    void complete() noexcept {
        Waker waiter;
        {
            std::lock_guard lock(mutex_);
            done_ = true;  // result is written before, and read after, this lock
            waiter = std::move(waiter_);
        }
        if (waiter) std::move(waiter).wake();  // outside the lock: it takes the executor's
    }

    bool done() {
        std::lock_guard lock(mutex_);
        return done_;
    }

    // The awaiter's side. Returns false (do not suspend) if the task is done
    // or the awaiter was interrupted before it could wait; else keeps `waker`
    // and sets `waiting`, before the unlock that lets others take the waker.
    bool wait(Waker& waker, const bool& interrupted, bool& waiting) {
        std::lock_guard lock(mutex_);
        if (done_ || interrupted) return false;
        if (waiter_) throw std::logic_error("fiber::JoinHandle: awaited by two tasks at once");
        waiter_ = std::move(waker);
        waiting = true;
        return true;
    }

    // The awaiting task was asked to stop: if it still waits, take its waker
    // and wake it; `interrupted` (guarded by our mutex) tells it why.
    void interrupt(bool& interrupted) noexcept {
        Waker waiter;
        {
            std::lock_guard lock(mutex_);
            if (done_) return;  // its wake is on its way: the value wins
            interrupted = true;
            waiter = std::move(waiter_);
        }
        if (waiter) std::move(waiter).wake();
    }

    // The awaiter is destroyed while it waits (its executor shuts down).
    void forget_waiter() noexcept {
        Waker dropped;
        std::lock_guard lock(mutex_);
        dropped = std::move(waiter_);
    }

    // Once, after done: the value, or the task's exception rethrown.
    T take() {
        if (taken_) throw std::logic_error("fiber::JoinHandle: the result was taken already");
        taken_ = true;
        return result.get();
    }

    Result<T> result;  // written by the task before complete()

private:
    ~JoinState() {
        // Nobody took the result: a detached task. Its failure is reported,
        // never dropped (Cancelled is not a failure: someone asked for it).
        if (taken_ || !result.ready()) return;
        try {
            (void)result.get();
        } catch (const Cancelled&) {
        } catch (const std::exception& e) {
            std::fprintf(stderr, "fiber: a spawned task failed: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "fiber: a spawned task failed with a non-standard exception\n");
        }
    }
    template <typename U>
    friend JoinState<U>* make_join_state();

    std::atomic<int> refs_{2};  // the task's and the handle's
    std::mutex mutex_;          // guards done_ and waiter_
    bool done_ = false;
    Waker waiter_;
    bool taken_ = false;  // the handle's alone
};

template <typename U>
JoinState<U>* make_join_state() {
    return new JoinState<U>();
}

// The task's reference, in its frame: released when the frame goes.
template <typename T>
class JoinStateRef {
public:
    explicit JoinStateRef(JoinState<T>* state) noexcept : state_(state) {}
    JoinStateRef(JoinStateRef&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    JoinStateRef& operator=(JoinStateRef&&) = delete;
    ~JoinStateRef() {
        if (state_) state_->release();
    }
    JoinState<T>* operator->() const noexcept { return state_; }

private:
    JoinState<T>* state_;
};

// The spawned coroutine: runs the task, keeps its outcome, wakes the handle.
template <typename T>
Task<> run_joinable(Task<T> task, JoinStateRef<T> state) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(task);
            state->result.set_value();
        } else {
            state->result.set_value(co_await std::move(task));
        }
    } catch (...) {
        state->result.set_exception(std::current_exception());
    }
    state->complete();
}

}  // namespace detail

/// The handle of a task started with fiber::spawn(). `co_await handle`
/// waits for the task and gives its value, or rethrows its exception; an
/// aborted task that stopped early rethrows fiber::Cancelled. If the task
/// awaiting the handle is itself asked to stop, the await ends early with
/// fiber::Cancelled and the spawned task goes on (abort() it to stop it);
/// the handle can be awaited again. Destroying the handle detaches the task,
/// as Tokio does: it runs on, and if it fails, its exception is reported on
/// stderr. Move-only.
template <typename T>
class JoinHandle {
public:
    JoinHandle(JoinHandle&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    JoinHandle& operator=(JoinHandle&& other) noexcept {
        if (this != &other) {
            if (state_) state_->release();
            state_ = std::exchange(other.state_, nullptr);
        }
        return *this;
    }
    ~JoinHandle() {
        if (state_) state_->release();
    }

    /// Asks the task to stop: the awaiter it waits in (or the next one it
    /// reaches) throws fiber::Cancelled. From any thread; on a task that has
    /// finished, it does nothing.
    void abort() noexcept {
        if (state_) state_->stop.request_stop();
    }
    /// The task has finished (with a value or an exception).
    bool is_finished() const { return checked().done(); }
    /// Lets the task run on alone, as destroying the handle does.
    void detach() noexcept {
        if (state_) std::exchange(state_, nullptr)->release();
    }

    class Awaiter {
    public:
        explicit Awaiter(detail::JoinState<T>* state) noexcept : state_(state) {}
        Awaiter(Awaiter&&) = delete;
        ~Awaiter() {
            stop_.reset();  // first: a callback running elsewhere still uses *this
            if (waiting_) state_->forget_waiter();
        }
        bool await_ready() noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> self) {
            detail::StopState* stop = detail::current_stop_state();
            if (stop && stop->stop_requested()) {
                interrupted_ = true;
                return false;
            }
            Waker waker = current_waker(self);
            // Registered before the waker is published: a request that
            // comes before wait() sets interrupted_, and wait() sees it.
            if (stop) stop_.emplace(stop, Interrupt{this});
            // true: the waker is published, and *this is off limits now.
            return state_->wait(waker, interrupted_, waiting_);
        }
        T await_resume() {
            stop_.reset();  // from here on interrupted_ is ours alone
            waiting_ = false;
            if (interrupted_) throw Cancelled();
            return state_->take();
        }

    private:
        struct Interrupt {
            Awaiter* self;
            void operator()() const noexcept { self->state_->interrupt(self->interrupted_); }
        };
        detail::JoinState<T>* state_;  // the handle's reference: the handle outlives the await
        bool interrupted_ = false;     // under the state's mutex while stop_ is registered
        bool waiting_ = false;         // our waker is in the state: suspended, not yet resumed
        std::optional<detail::StopCallback<Interrupt>> stop_;
    };

    Awaiter operator co_await() const { return Awaiter(&checked()); }

private:
    template <typename U>
    friend JoinHandle<U> spawn(Task<U> task);
    explicit JoinHandle(detail::JoinState<T>* state) noexcept : state_(state) {}
    detail::JoinState<T>& checked() const {
        if (!state_) throw std::logic_error("fiber::JoinHandle: moved from, or detached");
        return *state_;
    }

    detail::JoinState<T>* state_;
};

/// Starts `task` on the runtime that runs the calling task (a worker may
/// pick it up at once) and returns its handle. The task gets a stop token
/// of its own, which the handle's abort() requests. Throws
/// std::logic_error outside a task run by a runtime: use a Spawner there.
template <typename T>
JoinHandle<T> spawn(Task<T> task) {
    static_assert(!std::is_reference_v<T>,
                  "fiber::spawn: a task that returns a reference "
                  "would hand it to another thread; return a value");
    detail::TaskRoot* root = detail::current_root();
    if (!root) {
        throw std::logic_error(
            "fiber::spawn: not inside a task run by a runtime (use a Spawner there)");
    }
    auto* state = detail::make_join_state<T>();  // two references: the handle's, the task's
    JoinHandle<T> handle(state);
    detail::StopRef stop = state->stop;  // the task's own reference
    // The scheduler outlives every task it runs, this one included.
    root->scheduler->spawn(detail::run_joinable(std::move(task), detail::JoinStateRef<T>(state)),
                           std::move(stop));
    return handle;
}

}  // namespace fiber
