// Executor and Spawner, as in the Rust original: the Spawner puts new tasks
// on a ready queue, and Executor::run() resumes whatever is ready until the
// queue is empty. One thread, a plain queue, no locks: chapter 3 lets wakers
// arrive from other threads, chapter 6 adds a pool of workers.
#pragma once

#include <coroutine>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

class Executor;

namespace detail {

class Scheduler;

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
        // Hands the exception to the scheduler; run() rethrows it.
        void unhandled_exception() noexcept;
    };
    using Handle = std::coroutine_handle<promise_type>;
    Handle handle;
};

// The state the Executor, the Spawner and every Waker share. Each holds a
// std::shared_ptr to it, so it lives until the last of them is gone. The
// Executor's destructor destroys the tasks; what is left after that is an
// empty, closed Scheduler that late Wakers and Spawners can still call.
class Scheduler : public std::enable_shared_from_this<Scheduler> {
public:
    ~Scheduler();
    void spawn(Task<> task);
    void schedule(std::coroutine_handle<> h);  // Waker::wake
    void fail(std::exception_ptr e) noexcept { failure_ = e; }
    void run();
    void unlink(Root::promise_type& root) noexcept;
    void destroy_all() noexcept;

private:
    std::deque<std::coroutine_handle<>> ready_;  // FIFO: spawn order is run order
    Root::promise_type* roots_ = nullptr;        // every spawned task not yet finished
    bool closed_ = false;                        // the Executor is gone
    std::exception_ptr failure_;                 // a spawned task's, for run() to rethrow
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

/// Runs the tasks its Spawners send. Destroying it destroys every task that
/// has not finished, including tasks spawned but never run.
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

    /// Resumes ready tasks, oldest first, until none is ready.
    void run() { detail::checked(scheduler_, "fiber::Executor").run(); }

private:
    friend std::pair<Executor, Spawner> new_executor_and_spawner();
    explicit Executor(std::shared_ptr<detail::Scheduler> s) : scheduler_(std::move(s)) {}
    std::shared_ptr<detail::Scheduler> scheduler_;
};

/// `auto [executor, spawner] = fiber::new_executor_and_spawner();`
std::pair<Executor, Spawner> new_executor_and_spawner();

}  // namespace fiber
