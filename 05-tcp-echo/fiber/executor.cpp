// The executor: a FIFO of ready coroutine handles, fed by any thread.
#include "fiber/executor.hpp"

#include "fiber/block_on.hpp"
#include "fiber/budget.hpp"

#include "fiber/reactor.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>

namespace fiber {

namespace detail {

namespace {

// The scheduler whose run() is on this thread's stack, for current_waker().
thread_local Scheduler* t_current = nullptr;

// How many tasks run() resumes between two looks at the reactor while its
// queue is not empty. Tokio's number (event_interval): looking costs a
// system call, and a task that waits for I/O waits this long at most.
constexpr unsigned kPollInterval = 61;

Root run_root(Task<> task) { co_await std::move(task); }

}  // namespace

void refuse_inside_a_task() {
    // The task that calls block_on would wait, with its whole executor,
    // for the inner task; if that one waits for a task of the outer
    // executor, nothing can run it. Tokio refuses the same way ("Cannot
    // start a runtime from within a runtime").
    if (t_current) {
        throw std::logic_error(
            "fiber::block_on inside a task: it would block the thread that runs its "
            "executor; co_await the task instead");
    }
}

void Root::promise_type::FinalAwaiter::await_suspend(Handle self) noexcept {  // unlink, destroy
    self.promise().scheduler->unlink(self.promise());
    self.destroy();  // the task is done; nothing else refers to this frame
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

Scheduler::~Scheduler() { destroy_all(); }

void Scheduler::spawn(Task<> task) {
    Root::Handle root = run_root(std::move(task)).handle;
    Root::promise_type& p = root.promise();
    p.scheduler = this;
    try {
        std::lock_guard lock(mutex_);
        if (closed_) {
            throw std::logic_error("fiber::Spawner::spawn: the executor has been destroyed");
        }
        ready_.push_back(root);  // first: if it throws, nothing is linked yet
        p.next = roots_;
        if (roots_) roots_->prev = &p;
        roots_ = &p;
        wakeup_.notify_one();
    } catch (...) {
        // Not under the lock: the task's arguments may hold Wakers, and a
        // Waker's destructor takes it.
        root.destroy();
        throw;
    }
}

void Scheduler::schedule(std::coroutine_handle<> h) {
    bool last;
    {
        std::lock_guard lock(mutex_);
        // Closed: the Executor is gone and took the frame with it.
        if (!closed_) ready_.push_back(h);  // if this throws, nothing changed
        --wakers_;                          // the waker that called us is used up
        last = orphaned_ && wakers_ == 0;
        // Notify before unlocking. After the unlock this thread must not
        // touch the Scheduler: run() may take this task at once, finish it
        // and return, the Executor and Spawners may go, and with no Waker
        // left, the last of them deletes the Scheduler, condition variable
        // included, while we would still be inside notify_one().
        if (!last) wakeup_.notify_one();
    }
    if (last) delete this;  // nobody else refers to it: see owners_gone()
}

void Scheduler::waker_created() {
    std::lock_guard lock(mutex_);
    ++wakers_;
}

void Scheduler::waker_dropped() {
    bool last;
    {
        std::lock_guard lock(mutex_);
        --wakers_;
        last = orphaned_ && wakers_ == 0;
        if (!last) wakeup_.notify_one();  // run() may be waiting for this very waker
    }
    if (last) delete this;
}

void Scheduler::owners_gone() noexcept {
    // The last Executor or Spawner let go. Wakers may still be out, on any
    // thread; then the last of them deletes the Scheduler. The decision is
    // made under the mutex that every Waker takes to leave, so exactly one
    // party sees "no owner and no Waker", and no Waker can be made any
    // more: only a task run by run() makes one, and run() needs an owner.
    bool last;
    {
        std::lock_guard lock(mutex_);
        orphaned_ = true;
        last = wakers_ == 0;
    }
    if (last) delete this;
}

void Scheduler::run() {
    Scheduler* outer = std::exchange(t_current, this);
    struct Restore {
        Scheduler* outer;
        ~Restore() { t_current = outer; }
    } restore{outer};

    std::unique_lock lock(mutex_);
    bool spent = false;  // the last task used up its budget (fiber/budget.hpp)
    for (unsigned tick = 1;; ++tick) {
        // Collect the I/O that is ready and the timers that are due, on
        // this thread: a task woken so is queued here, and no other thread
        // has to wake us. Always before sleeping, and every kPollInterval
        // tasks even while tasks are queued, so that a queue that never
        // runs dry cannot starve the tasks waiting for I/O. And after a
        // task that used up its budget: it yielded so that what came due
        // meanwhile runs first, and that includes the reactor's news. (The
        // reactor stays alive: only the Executor, which cannot be
        // destroyed while it runs, lets go of it.)
        const bool dry = ready_.empty();
        if (reactor_ && wakers_ > 0 && !stop_ && (dry || spent || tick % kPollInterval == 0)) {
            Reactor* reactor = reactor_.get();
            lock.unlock();
            if (dry) {
                reactor->poll_before_sleeping();
            } else {
                reactor->poll_ready();
            }
            lock.lock();
        }
        // The tempting version, "if (ready_.empty()) wait()", with the check
        // made before taking the lock, loses a wake-up: a timer thread can
        // push its handle and notify between our check and our sleep, and
        // we sleep on with a ready task. Here the predicate is tested under
        // the mutex that schedule() holds to push, and wait() releases that
        // mutex and sleeps in one step, so no push can fall in between.
        wakeup_.wait(lock, [this] { return !ready_.empty() || wakers_ == 0 || stop_; });
        if (stop_) {
            stop_ = false;  // the next run() starts afresh
            return;
        }
        if (ready_.empty()) return;  // nothing ready, and no waker left to change that
        std::coroutine_handle<> next = ready_.front();
        ready_.pop_front();
        lock.unlock();
        reset_budget();
        next.resume();  // runs until the task suspends or finishes
        spent = budget_spent();
        lock.lock();
    }
}

// run() is over. A reactor whose poller failed has woken its waiters with
// the error; run() ends with it too, so that a dead reactor is never
// mistaken for work done. Outside our lock: the reactor's lock is never
// taken second.
void Scheduler::rethrow_reactor_failure() {
    std::shared_ptr<Reactor> reactor;
    {
        std::lock_guard lock(mutex_);
        reactor = reactor_;
    }
    if (reactor) reactor->rethrow_failure();
}

void Scheduler::stop() {
    std::lock_guard lock(mutex_);
    stop_ = true;
    wakeup_.notify_one();
}

void Scheduler::unlink(Root::promise_type& root) noexcept {
    std::lock_guard lock(mutex_);
    if (root.prev) root.prev->next = root.next;
    if (root.next) root.next->prev = root.prev;
    if (roots_ == &root) roots_ = root.next;
    root.prev = root.next = nullptr;
}

std::shared_ptr<Reactor> Scheduler::reactor() {
    std::lock_guard lock(mutex_);
    if (closed_) throw std::logic_error("fiber: the executor has been destroyed");
    if (!reactor_) reactor_ = std::make_shared<Reactor>(this);
    return reactor_;
}

void Scheduler::destroy_all() noexcept {
    // Closed first: from now on a wake queues nothing and a spawn throws.
    // The reactor stops next (its thread is joined), so no waker can fire
    // into a frame while we destroy it. Not under our mutex: the reactor
    // thread may be inside wake(), which takes it. We let go of the reactor
    // here, not in ~Scheduler: a Waker may keep this Scheduler alive for
    // long, and the reactor's handles should not live that long.
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
        ready_.clear();  // handles into frames we are about to destroy
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
    if (!t_current) {
        throw std::logic_error("fiber: timers and I/O need a task run by Executor::run()");
    }
    return t_current->reactor();
}

}  // namespace detail

Waker::Waker(detail::Scheduler& scheduler, std::coroutine_handle<> handle)
    : scheduler_(&scheduler), handle_(handle) {
    scheduler.waker_created();  // from here on, the Scheduler waits for us
}

Waker::~Waker() {
    if (handle_) scheduler_->waker_dropped();
}

Waker& Waker::operator=(Waker&& other) noexcept {
    if (this != &other) {
        if (handle_) scheduler_->waker_dropped();
        scheduler_ = std::exchange(other.scheduler_, nullptr);
        handle_ = std::exchange(other.handle_, {});
    }
    return *this;
}

void Waker::wake() && {
    if (!handle_) throw std::logic_error("fiber::Waker::wake: empty waker (already woken?)");
    scheduler_->schedule(handle_);  // if this throws, the waker is still whole
    // The Scheduler may be gone already (we were its last Waker, and no
    // Executor is left): from here on, touch only our own fields.
    scheduler_ = nullptr;
    handle_ = {};
}

Waker current_waker(std::coroutine_handle<> h) {
    if (!detail::t_current) {
        throw std::logic_error("fiber: a task can only suspend while Executor::run() runs it");
    }
    return Waker(*detail::t_current, h);
}

std::pair<Executor, Spawner> new_executor_and_spawner() {
    // When the last Executor or Spawner copy goes, the deleter does not
    // delete: it tells the Scheduler, which may still have Wakers out.
    std::shared_ptr<detail::Scheduler> scheduler(new detail::Scheduler,
                                                 [](detail::Scheduler* s) { s->owners_gone(); });
    return {Executor(scheduler), Spawner(scheduler)};
}

}  // namespace fiber
