// The executor's insides, shared by executor.cpp (the tasks' lives: spawn,
// wake, the counts that end run()) and worker.cpp (the worker loop: local
// queues, stealing, parking). Not part of the public API: executor.hpp is.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fiber/frame_pool.hpp"
#include "fiber/stop_state.hpp"
#include "fiber/task.hpp"

namespace fiber::detail {

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
    kScheduled,  // in a queue or a LIFO slot, or about to be put there
    kRunning,    // a worker is inside resume()
    kNotified,   // woken while running: the worker queues it again
    kDone,       // finished: the frame is gone (never read; for the reader)
};

/// The scheduling part of a spawned task, in its root's promise: the state
/// word, where to resume it, and its link in the injection queue.
struct TaskHeader {
    std::atomic<TaskState> state{TaskState::kScheduled};
    // A spawned task's kind of cell: a JoinCell (join_handle.hpp) or a
    // plain one. Set before the task is queued, never changed; it fits in
    // the padding after the state byte.
    bool joinable = false;
    // The coroutine to resume next: the innermost one that suspended.
    // Written by the running worker when it mints the Waker, read by the
    // next worker to run the task; the state transitions order the two.
    std::coroutine_handle<> resume_at;
    TaskHeader* next_ready = nullptr;  // the injection queue is an intrusive list
};

/// What the code running in a task finds of its task (current_root()):
/// its stop state. A spawned task's root is its TaskCell; block_on's task
/// has one of its own, on block_on's stack.
struct TaskRoot : TaskHeader {
    // Who may stop the task (fiber/cancel.hpp): the awaiters it suspends
    // in register their stop callbacks here. Null (no stop possible) for a
    // task spawned without one. A plain cell holds a counted reference;
    // a JoinCell points to the state inside it.
    StopState* stop = nullptr;
};

// A spawned task, as the scheduler holds it: its root, its links in the
// scheduler's list of live tasks (so that tasks still pending when the
// executor goes away can be destroyed), and its outermost coroutine frame.
// Not a coroutine of its own: after each step, the worker asks the frame
// whether it is done, and ends the task (end_task() in executor.cpp). A
// Spawner's task and a join's child are plain cells, 56 bytes; spawn()
// with a JoinHandle makes a JoinCell, which says how it ends.
struct TaskCell : TaskRoot {
    TaskCell* prev = nullptr;
    TaskCell* next = nullptr;
    std::coroutine_handle<> top;  // owned: ending the task destroys it

    // Recycled as frames are (frame_pool.hpp). A JoinCell deletes itself
    // as what it is, so the size is always the right one.
    static void* operator new(std::size_t size) { return allocate_block(size); }
    static void operator delete(void* cell, std::size_t size) noexcept { free_block(cell, size); }
};

// A cell that ends its own way: the task's result goes to its JoinHandle.
struct JoinableCell : TaskCell {
    // The task is over: `finished`, it returned (or threw) in its last
    // step; not finished, it is destroyed with its executor. Destroys the
    // frame and lets go of the cell. Never throws: it runs on a worker.
    void (*end)(JoinableCell& cell, bool finished) noexcept = nullptr;
};

// How the runtime takes the frame out of a Task (task.hpp) to own it.
struct TaskAccess {
    template <typename T>
    static typename Task<T>::Handle release(Task<T>& task) noexcept {
        return std::exchange(task.handle_, {});
    }
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
//
// Where ready tasks wait: each worker has a LIFO slot and a local queue
// (worker.hpp); the injection queue below takes the tasks that come from
// outside the workers. With `shared_queue` there are no local queues: every
// task goes through the injection queue, which all workers share.
class Scheduler {
public:
    Scheduler(std::size_t workers, bool shared_queue);
    ~Scheduler();
    void owners_gone() noexcept;  // the last Executor or Spawner is gone
    void spawn(Task<> task, StopRef stop = {});
    void spawn(TaskCell& cell);   // queues it; on a closed scheduler, ends it and throws
    void wake(TaskHeader& task);  // Waker::wake
    void waker_created();         // current_waker
    void waker_dropped();         // a Waker destroyed unused
    void run();
    void rethrow_reactor_failure();  // after run(): a failed poller's error
    // block_on: runs `top` as the root task `root`, on this thread as
    // worker 0, until it has finished or nothing is left that could wake it.
    // Returns true if it finished in its first step: nothing else ran.
    bool run_root(TaskRoot& root, std::coroutine_handle<> top);
    // After run_root(): true if the scheduler is as good as new (no task,
    // no Waker, no reactor) and may run the next block_on.
    bool reusable(bool first_step) noexcept;
    void stop();
    void task_done(TaskCell& cell) noexcept;                       // unlinks and ends it
    static void end_task(TaskCell& cell, bool finished) noexcept;  // destroys its frame
    void destroy_all() noexcept;
    std::shared_ptr<Reactor> reactor();  // started on first use
    Reactor* polled_reactor();           // for a worker's poll; null until started
    std::size_t workers() const noexcept { return workers_.size(); }

private:
    // worker.cpp: one worker's loop and where it finds its tasks.
    void work(Worker& w);                                 // the loop
    TaskHeader* next_task(Worker& w);                     // nullptr: run() is over
    TaskHeader* find_work(Worker& w);                     // the idle path: search, then park
    TaskHeader* find_work_shared(Worker& w);              // the same with the shared queue
    TaskHeader* search(Worker& w);                        // injection queue, then steal
    TaskHeader* steal(Worker& w);                         // half of another worker's queue
    TaskHeader* steal_lifo(Worker& w);                    // a stuck worker's LIFO slot
    TaskHeader* take_lifo(Worker& w);                     // w's own LIFO slot
    TaskHeader* take_injected(Worker& w);                 // a batch into w's local queue
    TaskHeader* run_task(Worker& w, TaskHeader& task);    // returns a task to run again now
    TaskHeader* after_step(Worker& w, TaskHeader& task);  // run_task() once the task suspended
    void schedule_local(Worker& w, TaskHeader& task, bool lifo);
    void push_local(Worker& w, TaskHeader& task);   // w's queue; overflows to injection
    void stop_searching(Worker& w);                 // found work: maybe hand the search on
    bool any_local_work() const noexcept;           // a local queue or a LIFO slot is not empty
    bool any_queued_work() const noexcept;          // a local queue is not empty
    void nap(Worker& w);                            // watch the LIFO slots, asleep a little
    void notify_if_needed(bool lifo_fill = false);  // lock-free check, then notify_locked()
    void drain(Worker& w);                          // run() is over: local tasks to injection
    // executor.cpp: the injection queue and the counts, under mutex_.
    bool make_ready(TaskHeader& task);                       // true: the caller must queue it
    void push_locked(TaskHeader& task, bool notify = true);  // caller holds mutex_
    TaskHeader* pop_locked(Worker& w);                       // caller holds mutex_
    void notify_locked();    // unparks one worker, if that is needed
    void finish_locked();    // every worker leaves run()
    void settle(Worker& w);  // adds w's deferred count to refs_

    std::atomic<std::int64_t> refs_{1};  // see above; changed by any thread
    // Read without the lock as hints by any worker; written under mutex_.
    std::atomic<std::size_t> queued_{0};  // tasks in the injection queue
    std::atomic<bool> exit_{false};       // run() is over: workers leave
    // Two counts in one word, so that a worker which has just queued a task
    // reads both with one load: the workers searching for work (spinning,
    // stealing, or unparked to look), and the workers asleep (parked, or
    // not started yet in this run()). Changed by atomic read-modify-writes
    // (sequentially consistent, as the fences of the parking protocol need:
    // see worker.cpp); the asleep part only under mutex_, with idle_.
    static constexpr std::uint32_t kOneSearching = 1;
    static constexpr std::uint32_t kOneAsleep = 1u << 16;
    std::atomic<std::uint32_t> idle_state_{0};
    // The worker that watches the LIFO slots (see nap() in worker.cpp), if
    // one does. Set under mutex_ by the napper, cleared by it after its
    // nap; read by pushers, which unpark it rather than let a task wait.
    std::atomic<Worker*> napper_{nullptr};
    const bool shared_queue_;  // every task through the injection queue

    std::mutex mutex_;            // guards every member below
    TaskHeader* head_ = nullptr;  // the injection queue, FIFO: spawn order is run order
    TaskHeader* tail_ = nullptr;
    TaskCell* roots_ = nullptr;  // every spawned task not yet finished
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<Worker*> idle_;         // parked workers; reserved, so pushing never throws
    std::vector<std::thread> threads_;  // workers 1.. started in this run(); reserved
    std::size_t started_ = 1;           // workers running in this run(), worker 0 included
    bool running_ = false;              // run() is running: workers may be started
    bool in_run_ = false;  // a run() is under way, from its start until its workers are joined
    bool closed_ = false;  // the Executor is gone
    bool stop_ = false;    // stop() was called: run() returns at the next boundary
    std::shared_ptr<Reactor> reactor_;  // shared with every AsyncFd and sleep
    // block_on's task, while run_root() runs: its end ends the run. Set
    // before the workers start, so they read it without the lock.
    TaskHeader* root_ = nullptr;
    std::coroutine_handle<> root_top_;  // its outermost frame: done() once it returned
};

/// The root of the task running on this thread, or nullptr outside a task:
/// how an awaiter finds its task's stop state.
TaskRoot* current_root() noexcept;

/// The scheduler that runs the task running on this thread, or nullptr
/// outside a task: where spawn() puts the new task.
Scheduler* current_scheduler() noexcept;

// The Scheduler of an Executor or Spawner; one that was moved from has none.
inline Scheduler& checked(const std::shared_ptr<Scheduler>& scheduler, const char* who) {
    if (!scheduler) throw std::logic_error(std::string(who) + ": used after it was moved from");
    return *scheduler;
}

}  // namespace fiber::detail
