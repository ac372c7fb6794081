// Executor and Spawner, as in the Rust original: the Spawner puts new tasks
// on a ready queue, and Executor::run() resumes whatever is ready, now on a
// pool of worker threads. Each task carries a state word, so that it never
// runs on two workers at once; an idle worker spins briefly, then parks.
// Each executor owns a reactor, started the first time a task sleeps or
// does I/O. Each task also carries a stop token, which the awaiters it
// suspends in watch (fiber/cancel.hpp); fiber/join_handle.hpp builds on both.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

class Executor;

namespace detail {

class Scheduler;
class Reactor;
struct Worker;

/// Where a task is in its life. Wakers and workers change it with atomic
/// compare-exchanges, and only the thread that moves a task out of
/// kScheduled (by popping it) or keeps it in kRunning may resume it: that
/// is what makes "a task never runs on two threads at once" hold by
/// construction, not by luck.
enum class TaskState : std::uint8_t {
    kIdle,       // suspended; its one Waker (if any) is out there
    kScheduled,  // in the ready queue, or about to be pushed there
    kRunning,    // a worker is inside resume()
    kNotified,   // woken while running: the worker queues it again
    kDone,       // finished: the frame is gone (never read; for the reader)
};

/// The scheduling part of a spawned task, in its root's promise: the state
/// word, where to resume it, and its link in the ready queue.
struct TaskHeader {
    std::atomic<TaskState> state{TaskState::kScheduled};
    // The coroutine to resume next: the innermost one that suspended.
    // Written by the running worker when it mints the Waker, read by the
    // next worker to run the task; the state transitions order the two.
    std::coroutine_handle<> resume_at;
    TaskHeader* next_ready = nullptr;  // the ready queue is an intrusive list
};

// The coroutine that owns a spawned task: it awaits the task, then destroys
// itself. Its promise links it into the scheduler's list of live roots, so
// that tasks still pending when the executor goes away can be destroyed.
struct Root {
    struct promise_type : TaskHeader {
        Scheduler* scheduler = nullptr;
        promise_type* prev = nullptr;
        promise_type* next = nullptr;
        // The task's cancellation token (fiber/cancel.hpp): the awaiters it
        // suspends in register their stop callbacks on it. Empty (no stop
        // possible, no allocation) for a task spawned without one.
        std::stop_token stop_token;

        Root get_return_object() noexcept { return {Handle::from_promise(*this)}; }
        std::suspend_always initial_suspend() noexcept { return {}; }
        struct FinalAwaiter {
            bool await_ready() noexcept { return false; }
            void await_suspend(std::coroutine_handle<promise_type> self) noexcept;
            void await_resume() noexcept {}
        };
        FinalAwaiter final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        // A spawned task has no awaiter to rethrow to: report, never drop.
        void unhandled_exception() noexcept;
    };
    using Handle = std::coroutine_handle<promise_type>;
    Handle handle;
};

// The state the Executor, the Spawner and every Waker share, and that
// lives until the last of them is gone. One atomic count, refs_, holds a
// unit for the owners (every Executor and Spawner together: a shared_ptr
// whose deleter calls owners_gone()), one per Waker alive and one per task
// queued or running. Whoever takes it to zero deletes the Scheduler. While
// run() runs, refs_ == 1 means: nothing queued, nothing running, no Waker
// that could change that, so run() returns. The Executor's destructor
// destroys the tasks; what is left is an empty, closed Scheduler that late
// Wakers and Spawners can still call. Any thread may spawn or wake; only
// the workers in run() resume coroutines.
class Scheduler {
public:
    explicit Scheduler(std::size_t workers);
    ~Scheduler();
    void owners_gone() noexcept;  // the last Executor or Spawner is gone
    void spawn(Task<> task, std::stop_token stop_token = {});
    void wake(TaskHeader& task);  // Waker::wake
    void waker_created();         // current_waker
    void waker_dropped();         // a Waker destroyed unused
    void run();
    void stop();
    void task_done(Root::Handle root) noexcept;  // unlinks and destroys it
    void destroy_all() noexcept;
    std::shared_ptr<Reactor> reactor();  // started on first use
    Reactor* polled_reactor();           // for a worker's poll; null until started
    std::size_t workers() const noexcept { return workers_.size(); }

private:
    void work(Worker& w);                                    // one worker's loop
    TaskHeader* next_task(Worker& w);                        // nullptr: run() is over
    TaskHeader* find_work(Worker& w);                        // the idle path: spin, then park
    TaskHeader* run_task(Worker& w, TaskHeader& task);       // returns a task to run again now
    bool make_ready(TaskHeader& task);                       // true: the caller must queue it
    void push_locked(TaskHeader& task, bool notify = true);  // caller holds mutex_
    TaskHeader* pop_locked(Worker& w);                       // caller holds mutex_
    void notify_locked();    // unparks one worker, if that is needed
    void finish_locked();    // every worker leaves run()
    void settle(Worker& w);  // adds w's deferred count to refs_

    std::atomic<std::int64_t> refs_{1};  // see above; changed by any thread
    // Read without the lock by spinning workers; written under mutex_.
    std::atomic<std::size_t> queued_{0};  // tasks in the ready queue
    std::atomic<bool> exit_{false};       // run() is over: workers leave

    std::mutex mutex_;            // guards every member below
    TaskHeader* head_ = nullptr;  // the ready queue, FIFO: spawn order is run order
    TaskHeader* tail_ = nullptr;
    Root::promise_type* roots_ = nullptr;  // every spawned task not yet finished
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<Worker*> idle_;         // parked workers; reserved, so pushing never throws
    std::vector<std::thread> threads_;  // workers 1.. started in this run(); reserved
    std::size_t started_ = 1;           // workers running in this run(), worker 0 included
    bool running_ = false;              // run() is running: workers may be started
    std::size_t searching_ = 0;         // workers spinning for work, or unparked to look for it
    bool closed_ = false;               // the Executor is gone
    bool stop_ = false;                 // stop() was called: run() returns at the next boundary
    std::shared_ptr<Reactor> reactor_;  // shared with every AsyncFd and sleep
};

/// The root of the task running on this thread, or nullptr outside a task:
/// how spawn() finds its scheduler and an awaiter its task's stop token.
Root::promise_type* current_root() noexcept;

// The Scheduler of an Executor or Spawner; one that was moved from has none.
inline Scheduler& checked(const std::shared_ptr<Scheduler>& scheduler, const char* who) {
    if (!scheduler) throw std::logic_error(std::string(who) + ": used after it was moved from");
    return *scheduler;
}

}  // namespace detail

/// Puts tasks on an executor's ready queue. Copyable; every copy feeds the
/// same executor.
class Spawner {
public:
    /// Queues `task` to run. Throws std::logic_error once the Executor is gone.
    void spawn(Task<> task) {
        detail::checked(scheduler_, "fiber::Spawner").spawn(std::move(task));
    }

private:
    friend std::pair<Executor, Spawner> new_executor_and_spawner(std::size_t);
    explicit Spawner(std::shared_ptr<detail::Scheduler> s) : scheduler_(std::move(s)) {}
    std::shared_ptr<detail::Scheduler> scheduler_;
};

/// Runs the tasks its Spawners send. Destroying it stops its reactor, then
/// destroys every task that has not finished, including tasks spawned but
/// never run and tasks waiting for a timer or a descriptor.
class Executor {
public:
    Executor(Executor&&) noexcept = default;
    Executor& operator=(Executor&& other) noexcept {  // the old tasks go, as in ~Executor
        if (this != &other) {
            if (scheduler_) scheduler_->destroy_all();
            scheduler_ = std::move(other.scheduler_);
        }
        return *this;
    }
    ~Executor() {
        if (scheduler_) scheduler_->destroy_all();
    }

    /// Runs ready tasks on the worker threads, the calling thread being one
    /// of them, oldest first. Idle workers sleep until a Waker fires; it
    /// returns once nothing is ready or running and no Waker is left that
    /// could make a task ready. The worker threads are joined before it
    /// returns.
    void run() { detail::checked(scheduler_, "fiber::Executor").run(); }

    /// Makes run() return once the running tasks suspend, even though other
    /// tasks still wait; they are destroyed with the Executor. Every worker
    /// sees it. From any thread; called while run() is not running, it makes
    /// the next run() return at once.
    void stop() { detail::checked(scheduler_, "fiber::Executor").stop(); }

    /// How many threads run() runs tasks on, the calling thread included.
    std::size_t workers() const { return detail::checked(scheduler_, "fiber::Executor").workers(); }

private:
    friend std::pair<Executor, Spawner> new_executor_and_spawner(std::size_t);
    explicit Executor(std::shared_ptr<detail::Scheduler> s) : scheduler_(std::move(s)) {}
    std::shared_ptr<detail::Scheduler> scheduler_;
};

/// `auto [executor, spawner] = fiber::new_executor_and_spawner(workers);`
/// runs tasks on `workers` threads. 0, the default, means the environment
/// variable FIBER_WORKERS if it is set (the tests run with 1 and with 4,
/// as Tokio reads TOKIO_WORKER_THREADS), else one per hardware thread.
std::pair<Executor, Spawner> new_executor_and_spawner(std::size_t workers = 0);

}  // namespace fiber
