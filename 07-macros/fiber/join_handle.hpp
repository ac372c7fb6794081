// spawn(task) -> JoinHandle<T>: start a task on the runtime that runs the
// caller, and keep a handle to its result and to its stop source. The
// task's cell (what the scheduler holds of it) is also what the handle
// holds: one allocation besides the task's frame, with the result, the
// stop state and the awaiter's Waker in it. The task and the handle each
// hold a reference; whichever lets go last frees it, so neither can see it
// freed under it, on whichever worker each runs.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "fiber/budget.hpp"
#include "fiber/cancel.hpp"
#include "fiber/executor.hpp"
#include "fiber/stop_state.hpp"
#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

namespace detail {

// A task spawned with a JoinHandle, and what the two share. The state word
// replaces a mutex: four bits, each changed by one atomic step, decide
// which await may wait and who owns its Waker.
template <typename T>
class JoinCell final : public JoinableCell {
public:
    explicit JoinCell(typename Task<T>::Handle frame) noexcept {
        joinable = true;
        top = frame;
        stop = &stop_state_;
        end = &JoinCell::end_task;
    }

    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        // acq_rel: the other side's writes (the result, the waker slot)
        // happen before the delete, whichever side deletes.
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
    void request_stop() noexcept { stop_state_.request_stop(); }

    // acquire: the result, written before kDone, is visible once we see it.
    bool done() const noexcept { return state_.load(std::memory_order_acquire) & kDone; }

    // An await begins: the only one. The check for another await and the
    // claim are one atomic step, so two awaits at once on two workers
    // cannot both pass: exactly one finds kAwaited clear. (A load, then a
    // store, would let both through, and both write waiter_.) acquire: the
    // previous await's writes (taken_) happen before ours.
    void begin_await() {
        if (state_.fetch_or(kAwaited, std::memory_order_acquire) & kAwaited) {
            throw std::logic_error("fiber::JoinHandle: awaited by two tasks at once");
        }
    }
    // release: our writes happen before the next await's begin_await().
    void end_await() noexcept { state_.fetch_and(~kAwaited, std::memory_order_release); }

    // The awaiter's side, between begin_await() and end_await(). Returns
    // false (do not suspend) if the task is over or the awaiter was
    // interrupted before it could wait; else the Waker is published, and
    // `waiting` set: from then on, whoever clears kWaiting owns the Waker.
    bool wait(Waker& waker, bool& waiting) {
        std::uint32_t s = state_.load(std::memory_order_acquire);
        if (s & (kDone | kInterrupted)) return false;
        waiter_ = std::move(waker);  // ours: we hold kAwaited, and kWaiting is clear
        // release: the Waker is written before anyone can see kWaiting.
        while (!state_.compare_exchange_weak(s, s | kWaiting, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
            if (s & (kDone | kInterrupted)) {
                waker = std::move(waiter_);  // never published: still ours
                return false;
            }
        }
        waiting = true;
        return true;
    }

    // The awaiting task was asked to stop (its stop callback, any thread):
    // unless the task is done, mark the await interrupted, and wake the
    // awaiter if its Waker is published.
    void interrupt() noexcept {
        std::uint32_t s = state_.load(std::memory_order_relaxed);
        do {
            if (s & kDone) return;  // its wake is on its way: the value wins
        } while (!state_.compare_exchange_weak(s, (s | kInterrupted) & ~kWaiting,
                                               std::memory_order_acq_rel,
                                               std::memory_order_relaxed));
        if (s & kWaiting) std::move(waiter_).wake();
    }

    // After the await, once no stop callback can run any more: was it
    // interrupted? Clears the mark, so that the handle can be awaited again.
    bool take_interrupt() noexcept {
        if (!(state_.load(std::memory_order_relaxed) & kInterrupted)) return false;
        state_.fetch_and(~kInterrupted, std::memory_order_relaxed);
        return true;
    }

    // The awaiter is destroyed while it waits (its executor shuts down).
    void forget_waiter() noexcept {
        if (state_.fetch_and(~kWaiting, std::memory_order_acq_rel) & kWaiting) {
            Waker dropped = std::move(waiter_);
        }
    }

    // After done, by the await that holds kAwaited: the value once, or the
    // task's exception rethrown; Cancelled, always, for a task destroyed
    // with its executor (it has no result).
    T take() {
        if (!result_.ready()) throw Cancelled();
        if (taken_) throw std::logic_error("fiber::JoinHandle: the result was taken already");
        taken_ = true;
        return result_.get();
    }

    // A join or select dropped the value an await took (the await lost
    // its race): it goes back, for the next await to take. Called after
    // that await has ended, before the join or select returns.
    template <typename U>
    void put_back(U&& value) {
        result_.set_value(std::forward<U>(value));
        taken_ = false;
    }

private:
    // The task is over (end_task()); once set, never cleared.
    static constexpr std::uint32_t kDone = 1;
    // An awaiter's Waker is in waiter_. Set by wait(); cleared by whoever
    // takes the Waker: end_task(), interrupt(), or forget_waiter().
    static constexpr std::uint32_t kWaiting = 2;
    // The awaiter's own task was asked to stop: set by interrupt(),
    // cleared by take_interrupt() once no stop callback can run.
    static constexpr std::uint32_t kInterrupted = 4;
    // An await is under way, one at a time: begin_await() to end_await().
    static constexpr std::uint32_t kAwaited = 8;

    ~JoinCell() {
        // Nobody took the result: a detached task. Its failure is reported,
        // never dropped (Cancelled is not a failure: someone asked for it).
        if (taken_ || !result_.ready()) return;
        try {
            (void)result_.get();
        } catch (const Cancelled&) {
        } catch (const std::exception& e) {
            std::fprintf(stderr, "fiber: a spawned task failed: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "fiber: a spawned task failed with a non-standard exception\n");
        }
    }

    // The scheduler is done with the task: it returned (finished), or it is
    // destroyed with its executor. The result moves out of the frame, and
    // the frame goes (the task's arguments with it) before the awaiter is
    // woken: when the await ends, the task's destructors have all run.
    // Either way the task is over, and kDone says so: a task destroyed at
    // shutdown leaves no result, and its await throws Cancelled (Tokio:
    // JoinError::Cancelled). Leaving the awaiter's Waker in the cell would
    // leave the awaiter waiting for ever, if it runs on another runtime.
    static void end_task(JoinableCell& cell, bool finished) noexcept {
        auto& self = static_cast<JoinCell&>(cell);
        const auto frame = Task<T>::Handle::from_address(self.top.address());
        if (finished) {
            try {
                if constexpr (std::is_void_v<T>) {
                    frame.promise().result.get();
                    self.result_.set_value();
                } else {
                    self.result_.set_value(frame.promise().result.get());
                }
            } catch (...) {
                self.result_.set_exception(std::current_exception());
            }
        }
        frame.destroy();
        std::uint32_t s = self.state_.load(std::memory_order_relaxed);
        // release: the result before kDone; acquire: the Waker after kWaiting.
        while (!self.state_.compare_exchange_weak(
            s, (s | kDone) & ~kWaiting, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        }
        // On a closed scheduler (the awaiter is destroyed with this one's
        // executor) the wake does nothing; the awaiter's destructor finds
        // kWaiting clear.
        if (s & kWaiting) std::move(self.waiter_).wake();
        self.release();  // the task's reference
    }

    StopState stop_state_;  // the task's; the handle's abort() requests it
    std::atomic<std::uint32_t> state_{0};
    std::atomic<int> refs_{2};  // the task's and the handle's (and an awaiter's)
    Waker waiter_;              // owned as the state word says
    Result<T> result_;          // written before kDone, read after it
    bool taken_ = false;        // the await's that holds kAwaited
};

}  // namespace detail

/// The handle of a task started with fiber::spawn(). `co_await handle`
/// waits for the task and gives its value, or rethrows its exception; an
/// aborted task that stopped early rethrows fiber::Cancelled, and so does
/// a task destroyed unfinished with its executor (shutdown): no await
/// waits for ever. If the task awaiting the handle is itself asked to
/// stop, the await ends early with fiber::Cancelled and the spawned task
/// goes on (abort() it to stop it); the handle can be awaited again. One
/// await at a time: a second one meanwhile throws std::logic_error.
/// `co_await std::move(handle)` hands the handle over to the await, which
/// leaves it empty (and the task detached, if the await ends early).
/// Destroying the handle detaches the task, as Tokio does: it runs on, and
/// if it fails, its exception is reported on stderr. Move-only.
template <typename T>
class JoinHandle {
public:
    JoinHandle(JoinHandle&& other) noexcept : cell_(std::exchange(other.cell_, nullptr)) {}
    JoinHandle& operator=(JoinHandle&& other) noexcept {
        if (this != &other) {
            if (cell_) cell_->release();
            cell_ = std::exchange(other.cell_, nullptr);
        }
        return *this;
    }
    ~JoinHandle() {
        if (cell_) cell_->release();
    }

    /// Asks the task to stop: the awaiter it waits in (or the next one it
    /// reaches) throws fiber::Cancelled. From any thread; on a task that has
    /// finished, it does nothing.
    void abort() noexcept {
        if (cell_) cell_->request_stop();
    }
    /// The task has finished (with a value or an exception), or was
    /// destroyed unfinished with its executor: its await then throws
    /// fiber::Cancelled.
    bool is_finished() const { return checked().done(); }
    /// Puts back a value that an await of this handle took and then
    /// dropped: select, join and timeout call it when the await was a
    /// branch that lost (`co_await fiber::timeout(10ms, handle)` that timed
    /// out just as the task finished), so that the next await gives it.
    template <typename U = T>
        requires(!std::is_void_v<U>)
    void give_back(U value) { checked().put_back(std::move(value)); }
    /// Lets the task run on alone, as destroying the handle does.
    void detach() noexcept {
        if (cell_) std::exchange(cell_, nullptr)->release();
    }

    class Awaiter {
    public:
        // Holds a reference of its own: the handle may go while the await
        // waits (moved away or destroyed by another path), and a handle
        // awaited as an rvalue gives its reference to us. Made after the
        // cell's begin_await(): the await is ours until we are destroyed.
        explicit Awaiter(detail::JoinCell<T>* cell) noexcept : cell_(cell) {}
        Awaiter(Awaiter&&) = delete;
        ~Awaiter() {
            stop_.reset();   // first: a callback running elsewhere still uses the cell
            if (waiting_) {  // destroyed while it waits: its task is being destroyed
                cell_->forget_waiter();
                (void)cell_->take_interrupt();  // the next await must not see our mark
            }
            cell_->end_await();
            cell_->release();
        }
        // Finished already: no suspension, but one unit of the task's
        // budget (fiber/budget.hpp).
        bool await_ready() noexcept {
            finished_ = cell_->done();
            return finished_ && detail::spend_budget();
        }
        bool await_suspend(std::coroutine_handle<> self) {
            if (finished_) {
                // The budget is spent: yield. The value waits in the cell,
                // and wins over a stop request that comes meanwhile, as it
                // does for a handle that finished while we waited.
                std::move(current_waker(self)).wake();
                return true;
            }
            detail::StopState* stop = detail::current_stop_state();
            if (stop && stop->stop_requested()) {
                interrupted_ = true;
                return false;
            }
            Waker waker = current_waker(self);
            // Registered before the waker is published: a request that
            // comes before wait() marks the cell, and wait() sees it.
            if (stop) stop_.emplace(stop, Interrupt{cell_});
            // true: the waker is published, and the task may be resumed
            // on another worker at any moment.
            return cell_->wait(waker, waiting_);
        }
        T await_resume() {
            stop_.reset();  // from here on no callback marks the cell
            waiting_ = false;
            if (cell_->take_interrupt() || interrupted_) throw Cancelled();
            return cell_->take();
        }

    private:
        struct Interrupt {
            detail::JoinCell<T>* cell;  // alive: the awaiter holds a reference
            void operator()() const noexcept { cell->interrupt(); }
        };
        detail::JoinCell<T>* cell_;  // our own reference
        bool finished_ = false;      // the task had finished when the await began
        bool interrupted_ = false;   // stop was requested before we could wait
        bool waiting_ = false;       // our waker is in the cell: suspended, not yet resumed
        std::optional<detail::StopCallback<Interrupt>> stop_;
    };

    /// Throws std::logic_error if another task awaits the handle now.
    Awaiter operator co_await() const& {
        detail::JoinCell<T>& cell = checked();
        cell.begin_await();
        cell.add_ref();
        return Awaiter(&cell);
    }
    Awaiter operator co_await() && {
        checked().begin_await();
        return Awaiter(std::exchange(cell_, nullptr));  // the handle's reference
    }

private:
    template <typename U>
    friend JoinHandle<U> spawn(Task<U> task);
    explicit JoinHandle(detail::JoinCell<T>* cell) noexcept : cell_(cell) {}
    detail::JoinCell<T>& checked() const {
        if (!cell_) throw std::logic_error("fiber::JoinHandle: moved from, or detached");
        return *cell_;
    }

    detail::JoinCell<T>* cell_;
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
    detail::Scheduler* scheduler = detail::current_scheduler();
    if (!scheduler) {
        throw std::logic_error(
            "fiber::spawn: not inside a task run by a runtime (use a Spawner there)");
    }
    auto frame = detail::TaskAccess::release(task);
    if (!frame)
        throw std::logic_error("fiber::spawn: an empty task (moved from, or awaited already)");
    detail::JoinCell<T>* cell = nullptr;
    try {
        cell = new detail::JoinCell<T>(frame);
    } catch (...) {
        frame.destroy();  // out of memory: the task never starts
        throw;
    }
    JoinHandle<T> handle(cell);  // two references: the handle's, the task's
    // The scheduler outlives every task it runs, this one included. On a
    // closed scheduler it ends the cell (the task's reference) and throws.
    scheduler->spawn(*cell);
    return handle;
}

}  // namespace fiber
