// The executor's bookkeeping: spawning, waking, the count that tells run()
// when it is over, the injection queue, and shutdown. A task's state word
// keeps it on one worker at a time. The worker loop is in worker.cpp.
#include "fiber/executor.hpp"

#include "fiber/block_on.hpp"
#include "fiber/reactor.hpp"
#include "fiber/worker.hpp"

#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

namespace fiber {

namespace detail {

namespace {

Root run_root(Task<> task) { co_await std::move(task); }

std::size_t default_workers() {
    if (const char* env = std::getenv("FIBER_WORKERS")) {
        long n = std::strtol(env, nullptr, 10);
        if (n > 0) return static_cast<std::size_t>(n);
    }
    // Asked once: glibc reads /sys for it, a few microseconds each time.
    static const unsigned hardware = std::thread::hardware_concurrency();
    return hardware > 0 ? hardware : 1;
}

// FIBER_QUEUE=shared: every executor uses the shared queue, so that the
// tests and benchmarks can run both designs without being rebuilt.
bool shared_queue_from_env() {
    const char* env = std::getenv("FIBER_QUEUE");
    return env && std::string_view(env) == "shared";
}

}  // namespace

void refuse_inside_a_task() {
    // The task that calls block_on would wait, with its whole executor,
    // for the inner task; if that one waits for a task of the outer
    // executor, nothing can run it. Tokio refuses the same way ("Cannot
    // start a runtime from within a runtime").
    if (t_worker && t_worker->current) {
        throw std::logic_error(
            "fiber::block_on inside a task: it would block the thread that runs its "
            "executor; co_await the task instead");
    }
}

void Root::promise_type::FinalAwaiter::await_suspend(Handle self) noexcept {
    self.promise().scheduler->task_done(self);
}

void Root::promise_type::unhandled_exception() noexcept {
    try {
        throw;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fiber: a spawned task failed: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "fiber: a spawned task failed with a non-standard exception\n");
    }
}

Scheduler::Scheduler(std::size_t workers, bool shared_queue) : shared_queue_(shared_queue) {
    if (workers == 0) workers = default_workers();
    for (std::size_t i = 0; i < workers; ++i) {
        workers_.push_back(std::make_unique<Worker>());
        workers_.back()->scheduler = this;
        workers_.back()->seen_tick.resize(workers);  // a thief's notes: see steal_lifo()
    }
    idle_.reserve(workers);
    threads_.reserve(workers);
}

Scheduler::~Scheduler() { destroy_all(); }

void Scheduler::spawn(Task<> task) {
    Root::Handle root = run_root(std::move(task)).handle;
    Root::promise_type& p = root.promise();
    p.scheduler = this;
    p.resume_at = root;
    std::unique_lock lock(mutex_);
    if (closed_) {
        lock.unlock();
        // Not under the lock: the task's arguments may hold Wakers, and a
        // Waker's destructor takes it.
        root.destroy();
        throw std::logic_error("fiber::Spawner::spawn: the executor has been destroyed");
    }
    p.next = roots_;
    if (roots_) roots_->prev = &p;
    roots_ = &p;
    refs_.fetch_add(1);  // the task's unit, while it is queued or running
    if (!shared_queue_ && t_worker && t_worker->scheduler == this) {
        // Spawned by a task on one of our workers: into that worker's
        // queue, behind what is there (spawn order stays run order on one
        // worker). Not the LIFO slot: a new task is not a reply.
        lock.unlock();
        push_local(*t_worker, p);
        return;
    }
    push_locked(p);  // an intrusive list: nothing here can throw
}

// The one place a task leaves kIdle or kRunning on a wake. At most one
// Waker exists per suspension, so at most one thread runs this per task
// at a time, racing only with the worker that may still be running it.
bool Scheduler::make_ready(TaskHeader& task) {
    TaskState s = task.state.load(std::memory_order_relaxed);
    for (;;) {
        if (s == TaskState::kIdle) {
            // acquire: the worker that made it idle released the frame's
            // writes; we pass them on to whoever pops it (through mutex_ or
            // a local queue's release and acquire).
            if (task.state.compare_exchange_weak(s, TaskState::kScheduled,
                                                 std::memory_order_acquire)) {
                return true;
            }
        } else if (s == TaskState::kRunning) {
            // Still inside resume() on some worker (it suspended and gave
            // its Waker away, but the worker has not looked yet). Queueing it
            // now would let a second worker resume it while the first still
            // holds it: instead the first worker queues it when it is done.
            // release: what we wrote before waking is seen by the task.
            if (task.state.compare_exchange_weak(s, TaskState::kNotified,
                                                 std::memory_order_release)) {
                return false;
            }
        } else {
            throw std::logic_error("fiber::Waker::wake: the task is already awake");
        }
    }
}

void Scheduler::wake(TaskHeader& task) {
    // The Waker's unit in refs_ passes to the task (queued, or notified and
    // queued by its worker), so a wake never changes refs_ while we run.
    if (Worker* w = t_worker; w && w->scheduler == this) {
        // On one of our own workers, so run() runs: the Executor lives and
        // cannot be closed under us. No lock unless the task must be queued.
        if (w->current == &task) {
            // The running task woke itself: a yield. No other thread can
            // change its state now (only its one Waker could, and that is
            // this one), so a plain store does what make_ready() would.
            if (task.state.load(std::memory_order_relaxed) != TaskState::kRunning) {
                throw std::logic_error("fiber::Waker::wake: the task is already awake");
            }
            task.state.store(TaskState::kNotified, std::memory_order_relaxed);
            return;
        }
        if (make_ready(task)) {
            if (shared_queue_) {
                std::lock_guard lock(mutex_);
                push_locked(task);
            } else {
                // Woken by the running task: the LIFO slot, it runs next.
                // Woken by this worker's poll of the reactor: the queue.
                schedule_local(*w, task, w->current != nullptr);
            }
        }
        return;
    }
    bool last = false;
    {
        // Another thread (the reactor, a timer or test thread). The lock
        // orders us with destroy_all(): either we queue the task before the
        // Executor closes, or we see it closed and never touch the task,
        // whose frame may be gone.
        std::lock_guard lock(mutex_);
        if (closed_) {
            last = refs_.fetch_sub(1) == 1;  // we were the last: see owners_gone()
        } else if (make_ready(task)) {
            push_locked(task);  // notifies under the lock: see waker_dropped()
        }
    }
    if (last) delete this;
}

void Scheduler::waker_created() {
    // Counted in refs_ at once, not in the worker's unsettled balance: the
    // Waker may be dropped on another thread before this worker settles,
    // and that thread takes its unit out of refs_ at once. Had we deferred
    // the +1, refs_ could read 1 while this task still runs, and run()
    // would return under it. Deferring a -1 is safe (refs_ only reads too
    // high for a while); deferring a +1 is not. relaxed: a count; the
    // decrement that could reach 1 or 0 is ordered by settle() and mutex_.
    refs_.fetch_add(1, std::memory_order_relaxed);
}

void Scheduler::waker_dropped() {
    if (t_worker && t_worker->scheduler == this) {
        --t_worker->unsettled;  // settled when the running task suspends (deferring a -1 is safe)
        return;
    }
    bool last;
    {
        std::lock_guard lock(mutex_);
        std::int64_t left = refs_.fetch_sub(1) - 1;
        // Unpark the workers under the lock. After the unlock this thread
        // must not touch the Scheduler: run() may return, the owners go,
        // and the last of them deletes it, Parkers included.
        if (left == 1) finish_locked();  // that was the last Waker: run() returns
        last = left == 0;
    }
    if (last) delete this;
}

void Scheduler::owners_gone() noexcept {
    // The last Executor or Spawner let go. Wakers may still be out, on any
    // thread; then the last of them deletes the Scheduler. Every change of
    // refs_ that can reach zero is made under the mutex, so exactly one
    // party sees zero; no Waker can be made any more: only a task run by
    // run() makes one, and run() needs an owner.
    bool last;
    {
        std::lock_guard lock(mutex_);
        last = refs_.fetch_sub(1) == 1;
    }
    if (last) delete this;
}

void Scheduler::run() {
    {
        std::lock_guard lock(mutex_);
        // One run() at a time. A second one, on another thread or inside
        // one of our own tasks, would be worker 0 as well, and pop a queue
        // that only its owner may pop. It throws, and changes nothing.
        if (in_run_) {
            throw std::logic_error(
                "fiber::Executor::run: already running, on another thread or in this task");
        }
        if (stop_) {
            stop_ = false;  // the next run() starts afresh
            return;
        }
        if (refs_.load() == 1) return;  // nothing queued, and no waker left to change that
        exit_.store(false, std::memory_order_relaxed);
        running_ = true;
        in_run_ = true;
        // Nobody searches; every worker but this one is asleep (not started).
        // A worker started at the very end of the last run() may have left
        // its flag set: no thread runs now, so we clear them all.
        idle_state_.store(static_cast<std::uint32_t>(workers_.size() - 1) * kOneAsleep);
        for (const auto& w : workers_) w->searching = false;
        // The calling thread is worker 0. The others start when there is
        // work for them (see notify_locked()): block_on of one task starts
        // no thread at all. Tasks spawned before run() woke nobody.
        if (queued_.load(std::memory_order_relaxed) > 1) notify_locked();
    }
    // Every worker thread is joined before run() returns, so none outlives
    // it, and the Executor's destructor never destroys a frame that a
    // worker could still resume.
    struct Join {
        Scheduler& self;
        ~Join() {
            std::vector<std::thread> threads;
            {
                std::lock_guard lock(self.mutex_);
                self.finish_locked();  // no thread starts after this
                self.stop_ = false;
                self.running_ = false;
                threads = std::move(self.threads_);
                self.started_ = 1;
            }
            for (std::thread& t : threads) t.join();
            threads.clear();
            std::lock_guard lock(self.mutex_);
            self.threads_ = std::move(threads);  // keeps the reserved room for the next run()
            self.in_run_ = false;                // every worker is gone: the next run() may start
        }
    } join{*this};
    work(*workers_[0]);
}

// run() is over. A reactor whose poller failed has woken its waiters with
// the error; run() ends with it too, so that a dead reactor is never
// mistaken for work done. Not under our lock: the reactor's lock is never
// taken second.
void Scheduler::rethrow_reactor_failure() {
    std::shared_ptr<Reactor> reactor;
    {
        std::lock_guard lock(mutex_);
        reactor = reactor_;
    }
    if (reactor) reactor->rethrow_failure();
}

void Scheduler::settle(Worker& w) {
    if (w.unsettled == 0) return;
    const std::int64_t delta = std::exchange(w.unsettled, 0);
    if (refs_.fetch_add(delta) + delta == 1) {
        // Nothing queued or running and no Waker out: run() is over.
        std::lock_guard lock(mutex_);
        finish_locked();
    }
}

void Scheduler::task_done(Root::Handle root) noexcept {
    {
        std::lock_guard lock(mutex_);
        Root::promise_type& p = root.promise();
        if (p.prev) p.prev->next = p.next;
        if (p.next) p.next->prev = p.prev;
        if (roots_ == &p) roots_ = p.next;
    }
    t_worker->finished = true;  // tells run_task() not to look at the task
    root.destroy();             // the task is done; nothing else refers to this frame
}

void Scheduler::push_locked(TaskHeader& task, bool notify) {
    task.next_ready = nullptr;
    if (tail_) {
        tail_->next_ready = &task;
    } else {
        head_ = &task;
    }
    tail_ = &task;
    queued_.store(queued_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (notify) notify_locked();
}

TaskHeader* Scheduler::pop_locked(Worker& w) {
    TaskHeader* task = head_;
    if (!task) return nullptr;
    head_ = task->next_ready;
    if (!head_) tail_ = nullptr;
    queued_.store(queued_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    if (w.searching && shared_queue_) {
        // Found work: no longer searching. Wakes skipped unparking anyone
        // while we searched; if we were the last searcher and more work is
        // queued, hand the search on to a parked worker. (With local
        // queues, work() does it, after the unlock: see stop_searching().)
        w.searching = false;
        idle_state_.fetch_sub(kOneSearching);
        if (head_) notify_locked();
    }
    return task;
}

void Scheduler::notify_locked() {
    // At most one worker per wake, and none while one is searching already:
    // it will find this task, and ten wakes in a row must not unpark ten
    // workers that all find nothing (a thundering herd).
    // The fence orders our push (the queue, or queued_) before this load,
    // as the parking protocol needs: see find_work() in worker.cpp.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (idle_state_.load(std::memory_order_relaxed) % kOneAsleep > 0) {
        // A napper counts as searching, but sleeps: wake it (worker.cpp, nap()).
        if (Worker* napper = napper_.load(std::memory_order_relaxed)) napper->nap_parker.unpark();
        return;
    }
    if (idle_.empty()) {
        // Every started worker is busy: start the next one, if any is left.
        // It starts as a searcher, so the next wake leaves it be.
        if (!running_ || exit_.load(std::memory_order_relaxed)) return;
        if (started_ == workers_.size()) return;
        Worker* w = workers_[started_].get();
        try {
            threads_.emplace_back([this, w] { work(*w); });  // reserved: only the start can fail
        } catch (...) {
            return;  // no thread (std::system_error): the running workers do the work
        }
        ++started_;
        w->searching = true;
        idle_state_.fetch_add(kOneSearching - kOneAsleep);  // one asleep fewer, one searcher more
        return;
    }
    Worker* w = idle_.back();
    idle_.pop_back();
    w->searching = true;  // counted now, so the next wake leaves the others asleep
    idle_state_.fetch_add(kOneSearching - kOneAsleep);
    w->parker.unpark();
}

void Scheduler::finish_locked() {
    exit_.store(true, std::memory_order_relaxed);  // spinning workers see it and leave
    for (Worker* w : idle_) w->parker.unpark();
    idle_.clear();
    if (Worker* napper = napper_.load(std::memory_order_relaxed)) napper->nap_parker.unpark();
}

void Scheduler::stop() {
    std::lock_guard lock(mutex_);
    stop_ = true;
    finish_locked();  // every worker leaves at its next task boundary
}

// The reactor, if a task has started it, for a worker to poll. It stays
// alive while workers run: only destroy_all() lets go of it, after run().
Reactor* Scheduler::polled_reactor() {
    std::lock_guard lock(mutex_);
    return reactor_.get();
}

std::shared_ptr<Reactor> Scheduler::reactor() {
    std::lock_guard lock(mutex_);
    if (closed_) throw std::logic_error("fiber: the executor has been destroyed");
    if (!reactor_) reactor_ = std::make_shared<Reactor>(this);
    return reactor_;
}

void Scheduler::destroy_all() noexcept {
    // No worker runs: run() joins them before it returns. Closed first:
    // from now on a wake queues nothing and a spawn throws. The reactor
    // stops next (its thread is joined), so no waker can fire into a frame
    // while we destroy it. Not under our mutex: the reactor thread may be
    // inside wake(), which takes it. We let go of the reactor here, not in
    // ~Scheduler: a Waker may keep this Scheduler alive for long, and the
    // reactor's handles should not live that long.
    std::shared_ptr<Reactor> reactor;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        reactor = std::move(reactor_);
    }
    if (reactor) reactor->stop();

    Root::promise_type* roots = nullptr;
    {
        std::lock_guard lock(mutex_);
        // The queued tasks give back their units; their frames go below.
        std::int64_t queued = 0;
        for (; head_; head_ = head_->next_ready) ++queued;
        tail_ = nullptr;
        queued_.store(0, std::memory_order_relaxed);
        refs_.fetch_sub(queued);  // the owners' unit stays: never zero here
        roots = std::exchange(roots_, nullptr);
    }
    // Destroying a root destroys the task it awaits, and that task's frame
    // destroys the child it awaits, and so on down the chain. Their awaiters
    // drop their wakers (waker_dropped takes the mutex), so we hold no lock.
    while (roots) {
        Root::promise_type& root = *roots;
        roots = root.next;
        Root::Handle::from_promise(root).destroy();
    }
}

std::shared_ptr<Reactor> current_reactor() {
    if (!t_worker) {
        throw std::logic_error("fiber: timers and I/O need a task run by Executor::run()");
    }
    return t_worker->scheduler->reactor();
}

void yield_current(std::coroutine_handle<> h) {
    Worker* w = t_worker;
    if (!w || !w->current) {
        throw std::logic_error("fiber: a task can only suspend while Executor::run() runs it");
    }
    // The running task asks to run again after the others: kNotified, as
    // if it had woken itself, but with no Waker to count. No other thread
    // can reach the task now (a suspension hands out at most one Waker,
    // and this one hands out none), so a plain store does. run_task()
    // takes the running unit away and queues the task again; the +1 here
    // is the queued task's unit. It is settled in the same step, so no
    // other thread can see refs_ without it.
    w->current->resume_at = h;
    w->current->state.store(TaskState::kNotified, std::memory_order_relaxed);
    ++w->unsettled;
}

}  // namespace detail

Waker::Waker(detail::Scheduler& scheduler, detail::TaskHeader& task)
    : scheduler_(&scheduler), task_(&task) {
    scheduler.waker_created();  // from here on, the Scheduler waits for us
}

Waker::~Waker() {
    if (task_) scheduler_->waker_dropped();
}

Waker& Waker::operator=(Waker&& other) noexcept {
    if (this != &other) {
        if (task_) scheduler_->waker_dropped();
        scheduler_ = std::exchange(other.scheduler_, nullptr);
        task_ = std::exchange(other.task_, nullptr);
    }
    return *this;
}

void Waker::wake() && {
    if (!task_) throw std::logic_error("fiber::Waker::wake: empty waker (already woken?)");
    detail::Scheduler* scheduler = std::exchange(scheduler_, nullptr);
    detail::TaskHeader* task = std::exchange(task_, nullptr);
    // Emptied first: the Scheduler may be gone once wake() returns (we were
    // its last Waker, and no Executor is left), and the task may already run
    // on another worker, where it may move or destroy this very Waker.
    try {
        scheduler->wake(*task);  // never allocates: the queues are intrusive or fixed rings
    } catch (...) {              // a second Waker for one suspension: nothing changed
        scheduler_ = scheduler;
        task_ = task;
        throw;
    }
}

Waker current_waker(std::coroutine_handle<> h) {
    detail::Worker* w = detail::t_worker;
    if (!w || !w->current) {
        throw std::logic_error("fiber: a task can only suspend while Executor::run() runs it");
    }
    w->current->resume_at = h;  // where the wake resumes the task
    return Waker(*w->scheduler, *w->current);
}

std::pair<Executor, Spawner> new_executor_and_spawner(ExecutorOptions options) {
    const bool shared = options.shared_queue || detail::shared_queue_from_env();
    // When the last Executor or Spawner copy goes, the deleter does not
    // delete: it tells the Scheduler, which may still have Wakers out.
    std::shared_ptr<detail::Scheduler> scheduler(new detail::Scheduler(options.workers, shared),
                                                 [](detail::Scheduler* s) { s->owners_gone(); });
    return {Executor(scheduler), Spawner(scheduler)};
}

}  // namespace fiber
