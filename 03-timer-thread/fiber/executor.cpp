// The executor: a FIFO of ready coroutine handles, fed by any thread.
#include "fiber/executor.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>

namespace fiber {

namespace detail {

namespace {

// A reference to the scheduler whose run() is on this thread's stack, for
// current_waker(). It points into run()'s own frame (see there).
thread_local const std::shared_ptr<Scheduler>* t_current = nullptr;

Root run_root(Task<> task) { co_await std::move(task); }

}  // namespace

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
        if (closed_) throw std::logic_error("fiber::Spawner::spawn: the executor has been destroyed");
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
    {
        std::lock_guard lock(mutex_);
        // Closed: the Executor is gone and took the frame with it.
        if (!closed_) ready_.push_back(h);  // if this throws, nothing changed
        --wakers_;                          // the waker that called us is used up
    }
    // The moment we unlocked, run() may have taken this task, finished it
    // and returned, and the Executor may be gone. This Scheduler, condition
    // variable included, is not: the Waker calling us holds a reference to
    // it until wake() returns. So we can notify after unlocking, and run()
    // does not wake up only to wait for a mutex we still hold.
    wakeup_.notify_one();
}

void Scheduler::waker_created() {
    std::lock_guard lock(mutex_);
    ++wakers_;
}

void Scheduler::waker_dropped() {
    std::lock_guard lock(mutex_);
    --wakers_;
    wakeup_.notify_one();  // run() may be waiting for this very waker
}

void Scheduler::run() {
    // One reference for the whole run: each Waker copies it, which costs a
    // counter increment, not a lookup.
    const std::shared_ptr<Scheduler> self = shared_from_this();
    const std::shared_ptr<Scheduler>* outer = std::exchange(t_current, &self);
    struct Restore {
        const std::shared_ptr<Scheduler>* outer;
        ~Restore() { t_current = outer; }
    } restore{outer};

    std::unique_lock lock(mutex_);
    for (;;) {
        // The tempting version, "if (ready_.empty()) wait()", with the check
        // made before taking the lock, loses a wake-up: a timer thread can
        // push its handle and notify between our check and our sleep, and
        // we sleep on with a ready task. Here the predicate is tested under
        // the mutex that schedule() holds to push, and wait() releases that
        // mutex and sleeps in one step, so no push can fall in between.
        wakeup_.wait(lock, [this] { return !ready_.empty() || wakers_ == 0; });
        if (ready_.empty()) return;  // nothing ready, and no waker left to change that
        std::coroutine_handle<> next = ready_.front();
        ready_.pop_front();
        lock.unlock();
        next.resume();  // runs until the task suspends or finishes
        lock.lock();
    }
}

void Scheduler::unlink(Root::promise_type& root) noexcept {
    std::lock_guard lock(mutex_);
    if (root.prev) root.prev->next = root.next;
    if (root.next) root.next->prev = root.prev;
    if (roots_ == &root) roots_ = root.next;
    root.prev = root.next = nullptr;
}

void Scheduler::destroy_all() noexcept {
    Root::promise_type* roots = nullptr;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
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

}  // namespace detail

Waker::Waker(std::shared_ptr<detail::Scheduler> scheduler, std::coroutine_handle<> handle)
    : scheduler_(std::move(scheduler)), handle_(handle) {
    scheduler_->waker_created();
}

Waker::~Waker() {
    if (handle_) scheduler_->waker_dropped();
}

Waker& Waker::operator=(Waker&& other) noexcept {
    if (this != &other) {
        if (handle_) scheduler_->waker_dropped();
        scheduler_ = std::move(other.scheduler_);
        handle_ = std::exchange(other.handle_, {});
    }
    return *this;
}

void Waker::wake() && {
    if (!handle_) throw std::logic_error("fiber::Waker::wake: empty waker (already woken?)");
    scheduler_->schedule(handle_);  // if this throws, the waker is still whole
    handle_ = {};
    scheduler_.reset();  // may be the last reference: the Scheduler goes now
}

Waker current_waker(std::coroutine_handle<> h) {
    if (!detail::t_current) {
        throw std::logic_error("fiber: a task can only suspend while Executor::run() runs it");
    }
    return Waker(*detail::t_current, h);  // one more reference to the Scheduler
}

std::pair<Executor, Spawner> new_executor_and_spawner() {
    auto scheduler = std::make_shared<detail::Scheduler>();
    return {Executor(scheduler), Spawner(scheduler)};
}

}  // namespace fiber
