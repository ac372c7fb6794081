// The executor: a pool of workers around one FIFO of ready tasks. A task's
// state word keeps it on one worker at a time; idle workers spin, then park.
#include "fiber/executor.hpp"

#include "fiber/parker.hpp"
#include "fiber/reactor.hpp"

#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace fiber {

namespace detail {

// One worker thread's own state. Only its thread touches the plain fields,
// except `searching`, which is guarded by the Scheduler's mutex.
struct Worker {
    Scheduler* scheduler = nullptr;
    Parker parker;
    TaskHeader* current = nullptr;  // the task being resumed, for current_waker()
    bool finished = false;          // the current task ran to its end
    bool searching = false;         // counted in searching_ (under the mutex)
    // Wakers minted here minus Wakers used or dropped here, not yet added
    // to refs_. A yield mints a Waker and uses it at once: +1 - 1, and
    // refs_, a cache line every worker shares, is not touched at all.
    std::int64_t unsettled = 0;
};

namespace {

// The worker whose loop is on this thread's stack (nested block_on: the
// innermost one). Its scheduler is the one current_waker() and timers use.
thread_local Worker* t_worker = nullptr;

Root run_root(Task<> task) { co_await std::move(task); }

// How long an idle worker looks for work before it parks. Parking and
// unparking costs two system calls and a few microseconds of latency; a
// task woken within this window is picked up without them. Go's scheduler
// spins in the same range; Tokio does not spin at all but searches the
// other workers' queues once before it parks.
constexpr auto kSpin = std::chrono::microseconds(30);

// How many tasks a worker runs between two looks at the reactor while
// there is work. Tokio's number (event_interval): looking costs a system
// call, and a task that waits for I/O waits this long at most.
constexpr unsigned kPollInterval = 61;

// Tells the CPU we are in a spin loop: it saves power, and a hyperthread
// sibling gets the core (about 40 to 140 cycles on current x86).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

std::size_t default_workers() {
    if (const char* env = std::getenv("FIBER_WORKERS")) {
        long n = std::strtol(env, nullptr, 10);
        if (n > 0) return static_cast<std::size_t>(n);
    }
    // Asked once: glibc reads /sys for it, a few microseconds each time.
    static const unsigned hardware = std::thread::hardware_concurrency();
    return hardware > 0 ? hardware : 1;
}

}  // namespace

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

Scheduler::Scheduler(std::size_t workers) {
    if (workers == 0) workers = default_workers();
    for (std::size_t i = 0; i < workers; ++i) {
        workers_.push_back(std::make_unique<Worker>());
        workers_.back()->scheduler = this;
    }
    idle_.reserve(workers);
    threads_.reserve(workers);
}

Scheduler::~Scheduler() { destroy_all(); }

void Scheduler::spawn(Task<> task, std::stop_token stop_token) {
    Root::Handle root = run_root(std::move(task)).handle;
    Root::promise_type& p = root.promise();
    p.scheduler = this;
    p.resume_at = root;
    p.stop_token = std::move(stop_token);
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
    push_locked(p);      // an intrusive list: nothing here can throw
}

// The one place a task leaves kIdle or kRunning on a wake. At most one
// Waker exists per suspension, so at most one thread runs this per task
// at a time, racing only with the worker that may still be running it.
bool Scheduler::make_ready(TaskHeader& task) {
    TaskState s = task.state.load(std::memory_order_relaxed);
    for (;;) {
        if (s == TaskState::kIdle) {
            // acquire: the worker that made it idle released the frame's
            // writes; we pass them on to whoever pops it (through mutex_).
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
    if (t_worker && t_worker->scheduler == this) {
        // On one of our own workers, so run() runs: the Executor lives and
        // cannot be closed under us. No lock unless the task must be queued.
        if (make_ready(task)) {
            std::lock_guard lock(mutex_);
            push_locked(task);
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

void Scheduler::waker_created() { ++t_worker->unsettled; }  // only run on a worker

void Scheduler::waker_dropped() {
    if (t_worker && t_worker->scheduler == this) {
        --t_worker->unsettled;  // settled when the running task suspends
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
        if (stop_) {
            stop_ = false;  // the next run() starts afresh
            return;
        }
        if (refs_.load() == 1) return;  // nothing queued, and no waker left to change that
        exit_.store(false, std::memory_order_relaxed);
        running_ = true;
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
        }
    } join{*this};
    work(*workers_[0]);
}

void Scheduler::work(Worker& w) {
    Worker* outer = std::exchange(t_worker, &w);
    TaskHeader* task = next_task(w);
    for (unsigned tick = 1; task; ++tick) {
        // Now and then, collect the I/O that is ready and the timers that
        // are due, even while there is work, so that a queue that never
        // runs dry cannot starve the tasks waiting for I/O. find_work()
        // does it too, before it spins.
        if (tick % kPollInterval == 0) {
            if (Reactor* reactor = polled_reactor()) reactor->poll_ready();
        }
        TaskHeader* again = run_task(w, *task);
        if (again && exit_.load(std::memory_order_relaxed)) {
            std::lock_guard lock(mutex_);  // run() is over: leave it queued for the next
            push_locked(*again, false);
            again = nullptr;
        }
        task = again ? again : next_task(w);
    }
    t_worker = outer;
}

TaskHeader* Scheduler::run_task(Worker& w, TaskHeader& task) {
    // We popped it: it is ours until we store kIdle or queue it again.
    assert(task.state.load(std::memory_order_relaxed) == TaskState::kScheduled);
    task.state.store(TaskState::kRunning, std::memory_order_relaxed);
    w.current = &task;
    w.finished = false;
    task.resume_at.resume();  // runs until the task suspends or finishes
    w.current = nullptr;
    --w.unsettled;  // the task's running unit
    if (w.finished) {
        settle(w);  // the frame is gone: task_done() destroyed it
        return nullptr;
    }
    TaskState s = TaskState::kRunning;
    // release on success: the frame's writes reach whoever wakes it next.
    // From that instant another worker may run it: we must not touch it.
    // acquire on failure: we see what the waker wrote before it woke us.
    if (!task.state.compare_exchange_strong(s, TaskState::kIdle, std::memory_order_release,
                                            std::memory_order_acquire)) {
        // kNotified: woken while it ran (a yield, or a fast reactor). Its
        // Waker's unit becomes the queued task's.
        task.state.store(TaskState::kScheduled, std::memory_order_relaxed);
        settle(w);
        // Nothing else is queued (a hint: a task queued just now waits one
        // turn, and its waker unparked a worker for it): run it again at
        // once, with no lock and no worker woken. A yield on one worker
        // then costs two atomic operations on its own task.
        if (queued_.load(std::memory_order_relaxed) == 0) return &task;
        std::lock_guard lock(mutex_);
        push_locked(task);
        return nullptr;
    }
    settle(w);
    return nullptr;
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

TaskHeader* Scheduler::next_task(Worker& w) {
    if (exit_.load(std::memory_order_relaxed)) return nullptr;
    {
        std::lock_guard lock(mutex_);
        if (TaskHeader* task = pop_locked(w)) return task;
    }
    return find_work(w);
}

// The idle path, all in one place: nothing was ready. Spin a little, then
// park until a wake (or the end of run()) unparks us.
TaskHeader* Scheduler::find_work(Worker& w) {
    Reactor* reactor;
    {
        std::lock_guard lock(mutex_);
        if (!w.searching) {
            w.searching = true;  // while we search, wakes leave the parked workers alone
            ++searching_;
        }
        reactor = reactor_.get();
    }
    // Collect what the reactor has, on this thread: the tasks it wakes are
    // queued here, and, as we count as searching, no parked worker is
    // woken for them. Only if there is nothing does the reactor thread
    // wait in the poller (chapter 5).
    if (reactor) reactor->poll_before_sleeping();
    const auto give_up = std::chrono::steady_clock::now() + kSpin;
    for (unsigned i = 1; !exit_.load(std::memory_order_relaxed); ++i) {
        if (queued_.load(std::memory_order_relaxed) > 0) {  // a hint; the lock decides
            std::lock_guard lock(mutex_);
            if (TaskHeader* task = pop_locked(w)) return task;
        }
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > give_up) break;
    }
    std::unique_lock lock(mutex_);
    for (;;) {
        // The tempting version checks the queue, unlocks, then parks, and
        // loses a wake that queues a task in between. Here we register as
        // idle under the mutex that every push holds; a push after our
        // unlock finds us in idle_ and unparks us, and the Parker keeps that
        // token even if it comes before park() does.
        if (exit_.load(std::memory_order_relaxed)) break;
        if (TaskHeader* task = pop_locked(w)) return task;
        if (w.searching) {
            w.searching = false;
            --searching_;
        }
        idle_.push_back(&w);  // reserved: cannot throw
        lock.unlock();
        w.parker.park();
        lock.lock();  // unparked by a push (which counted us as searching) or by the end
    }
    if (w.searching) {
        w.searching = false;
        --searching_;
    }
    return nullptr;
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
    if (w.searching) {
        // Found work: no longer searching. Wakes skipped unparking anyone
        // while we searched; if we were the last searcher and more work is
        // queued, hand the search on to a parked worker.
        w.searching = false;
        --searching_;
        if (head_) notify_locked();
    }
    return task;
}

void Scheduler::notify_locked() {
    // At most one worker per wake, and none while one is searching already:
    // it will find this task, and ten wakes in a row must not unpark ten
    // workers that all find nothing (a thundering herd).
    if (searching_ > 0) return;
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
        ++searching_;
        return;
    }
    Worker* w = idle_.back();
    idle_.pop_back();
    w->searching = true;  // counted now, so the next wake leaves the others asleep
    ++searching_;
    w->parker.unpark();
}

void Scheduler::finish_locked() {
    exit_.store(true, std::memory_order_relaxed);  // spinning workers see it and leave
    for (Worker* w : idle_) w->parker.unpark();
    idle_.clear();
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
    if (!reactor_) reactor_ = std::make_shared<Reactor>();
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

// Every TaskHeader is a Root's promise: only spawn() makes them.
Root::promise_type* current_root() noexcept {
    if (!t_worker || !t_worker->current) return nullptr;
    return static_cast<Root::promise_type*>(t_worker->current);
}

std::shared_ptr<Reactor> current_reactor() {
    if (!t_worker) {
        throw std::logic_error("fiber: timers and I/O need a task run by Executor::run()");
    }
    return t_worker->scheduler->reactor();
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
        scheduler->wake(*task);  // never allocates: the ready queue is intrusive
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

std::pair<Executor, Spawner> new_executor_and_spawner(std::size_t workers) {
    // When the last Executor or Spawner copy goes, the deleter does not
    // delete: it tells the Scheduler, which may still have Wakers out.
    std::shared_ptr<detail::Scheduler> scheduler(new detail::Scheduler(workers),
                                                 [](detail::Scheduler* s) { s->owners_gone(); });
    return {Executor(scheduler), Spawner(scheduler)};
}

}  // namespace fiber
