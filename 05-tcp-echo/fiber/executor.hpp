// Executor and Spawner, as in the Rust original: the Spawner puts new tasks
// on a ready queue, and Executor::run() resumes whatever is ready. Wakers may
// now arrive from other threads (timer threads), so the queue is guarded by a
// mutex, and run() sleeps on a condition variable while tasks wait. Each
// executor owns a reactor, started the first time a task sleeps or does I/O.
// Still one thread runs tasks: chapter 6 adds a pool of workers.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <mutex>
#include <utility>

#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

class Executor;

namespace detail {

class Scheduler;
class Reactor;

// The coroutine that owns a spawned task: it awaits the task, then destroys
// itself. Its promise links it into the scheduler's list of live roots, so
// that tasks still pending when the executor goes away can be destroyed.
struct Root {
    struct promise_type {
        Scheduler* scheduler = nullptr;
        promise_type* prev = nullptr;
        promise_type* next = nullptr;

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
// lives until the last of them is gone. The Executor and Spawners hold a
// std::shared_ptr, whose deleter calls owners_gone(); the Wakers are
// counted in wakers_, a count run() needs anyway and that the mutex
// already guards, so a Waker costs no atomic reference count (chapters 1
// and 2 used a shared_ptr per Waker). Whoever lets go last deletes it. The
// Executor's destructor destroys the tasks; what is left after that is an
// empty, closed Scheduler that late Wakers and Spawners can still call.
// Any thread may spawn or wake; only the thread in run() resumes coroutines.
class Scheduler {
public:
    ~Scheduler();
    void owners_gone() noexcept;  // the last Executor or Spawner is gone
    void spawn(Task<> task);
    void schedule(std::coroutine_handle<> h);  // Waker::wake
    void waker_created();                      // current_waker
    void waker_dropped();                      // a Waker destroyed unused
    void run();
    void rethrow_reactor_failure();  // after run(): a failed poller's error
    void stop();
    void unlink(Root::promise_type& root) noexcept;
    void destroy_all() noexcept;
    std::shared_ptr<Reactor> reactor();  // started on first use

private:
    std::mutex mutex_;  // guards every member below
    std::condition_variable wakeup_;
    std::deque<std::coroutine_handle<>> ready_;  // FIFO: spawn order is run order
    Root::promise_type* roots_ = nullptr;        // every spawned task not yet finished
    std::size_t wakers_ = 0;                     // Wakers alive: who could still wake a task
    bool closed_ = false;                        // the Executor is gone
    bool orphaned_ = false;                      // no Executor or Spawner: the last Waker deletes
    bool stop_ = false;                          // run() returns at the next task boundary
    std::shared_ptr<Reactor> reactor_;           // shared with every AsyncFd and sleep
};

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
    friend std::pair<Executor, Spawner> new_executor_and_spawner();
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

    /// Resumes ready tasks, oldest first. When none is ready it sleeps until
    /// a Waker fires; it returns once nothing is ready and no Waker is left
    /// that could make a task ready. If the reactor's poller has failed, it
    /// then throws the poller's error (std::system_error).
    void run() {
        detail::Scheduler& scheduler = detail::checked(scheduler_, "fiber::Executor");
        scheduler.run();
        scheduler.rethrow_reactor_failure();
    }

    /// Makes run() return once the running task suspends, even though other
    /// tasks still wait; they are destroyed with the Executor. From any thread;
    /// called while run() is not running, it makes the next run() return at once.
    void stop() { detail::checked(scheduler_, "fiber::Executor").stop(); }

private:
    friend std::pair<Executor, Spawner> new_executor_and_spawner();
    explicit Executor(std::shared_ptr<detail::Scheduler> s) : scheduler_(std::move(s)) {}
    std::shared_ptr<detail::Scheduler> scheduler_;
};

/// `auto [executor, spawner] = fiber::new_executor_and_spawner();`
std::pair<Executor, Spawner> new_executor_and_spawner();

}  // namespace fiber
