// Executor and Spawner, as in the Rust original: the Spawner puts new tasks
// on a ready queue, and Executor::run() resumes whatever is ready, now on a
// pool of worker threads. Each task carries a state word, so that it never
// runs on two workers at once; an idle worker looks for work, then parks.
// Each worker has its own queue of ready tasks and a slot for the task to
// run next; a worker with nothing to do steals from the others. One
// option keeps the simpler design: one queue that every worker shares.
// Each executor owns a reactor, started the first time a task sleeps or
// does I/O. Each task also carries a stop token, which the awaiters it
// suspends in watch (fiber/cancel.hpp); fiber/join_handle.hpp builds on both.
//
// This header is the public API. The scheduler behind it: scheduler.hpp
// (task states, the shared parts), worker.hpp and run_queue.hpp (a worker's
// own queue), executor.cpp (spawn, wake, the end of run()), worker.cpp
// (the worker loop: where a worker finds its next task, stealing, parking).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include "fiber/scheduler.hpp"
#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

class Executor;

/// How an executor schedules its tasks.
struct ExecutorOptions {
    /// Worker threads, the calling thread of run() included. 0: the
    /// environment variable FIBER_WORKERS if it is set (the tests run with
    /// 1 and with 4, as Tokio reads TOKIO_WORKER_THREADS), else one per
    /// hardware thread.
    std::size_t workers = 0;
    /// true: every ready task goes through one queue that all workers share
    /// under one mutex: the simpler design, kept to compare against. false,
    /// the default: each worker keeps the tasks it wakes and spawns in its
    /// own queue, and idle workers steal from busy ones. The environment
    /// variable FIBER_QUEUE=shared turns it on for every executor.
    bool shared_queue = false;
};

/// Puts tasks on an executor's ready queue. Copyable; every copy feeds the
/// same executor.
class Spawner {
public:
    /// Queues `task` to run. Throws std::logic_error once the Executor is gone.
    void spawn(Task<> task) {
        detail::checked(scheduler_, "fiber::Spawner").spawn(std::move(task));
    }

private:
    friend std::pair<Executor, Spawner> new_executor_and_spawner(ExecutorOptions);
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
    /// of them: tasks spawned or woken from outside the workers oldest first,
    /// a task woken by a running task next, on its worker (with the shared
    /// queue, everything oldest first). Idle workers sleep until a Waker fires; it
    /// returns once nothing is ready or running and no Waker is left that
    /// could make a task ready. The worker threads are joined before it
    /// returns. One run() at a time: a second one while it runs (on another
    /// thread, or inside one of its tasks) throws std::logic_error. If the
    /// reactor's poller has failed, it ends with the poller's error
    /// (std::system_error).
    void run() {
        detail::Scheduler& scheduler = detail::checked(scheduler_, "fiber::Executor");
        scheduler.run();
        scheduler.rethrow_reactor_failure();
    }

    /// Makes run() return once the running tasks suspend, even though other
    /// tasks still wait; they are destroyed with the Executor. Every worker
    /// sees it. From any thread; called while run() is not running, it makes
    /// the next run() return at once.
    void stop() { detail::checked(scheduler_, "fiber::Executor").stop(); }

    /// How many threads run() runs tasks on, the calling thread included.
    std::size_t workers() const { return detail::checked(scheduler_, "fiber::Executor").workers(); }

private:
    friend std::pair<Executor, Spawner> new_executor_and_spawner(ExecutorOptions);
    explicit Executor(std::shared_ptr<detail::Scheduler> s) : scheduler_(std::move(s)) {}
    std::shared_ptr<detail::Scheduler> scheduler_;
};

/// `auto [executor, spawner] = fiber::new_executor_and_spawner(options);`
/// runs tasks as `options` says (see ExecutorOptions).
std::pair<Executor, Spawner> new_executor_and_spawner(ExecutorOptions options);

/// `auto [executor, spawner] = fiber::new_executor_and_spawner(workers);`
/// runs tasks on `workers` threads. 0, the default, means the environment
/// variable FIBER_WORKERS if it is set, else one per hardware thread.
inline std::pair<Executor, Spawner> new_executor_and_spawner(std::size_t workers = 0) {
    return new_executor_and_spawner(ExecutorOptions{.workers = workers});
}

}  // namespace fiber
