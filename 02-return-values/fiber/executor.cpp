// The single-threaded executor: a FIFO of ready coroutine handles.
#include "fiber/executor.hpp"

#include "fiber/block_on.hpp"

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
    if (closed_) throw std::logic_error("fiber::Spawner::spawn: the executor has been destroyed");
    Root::Handle root = run_root(std::move(task)).handle;
    try {
        ready_.push_back(root);  // first: if it throws, nothing is linked yet
    } catch (...) {
        root.destroy();  // and the task with it
        throw;
    }
    Root::promise_type& p = root.promise();
    p.scheduler = this;
    p.next = roots_;
    if (roots_) roots_->prev = &p;
    roots_ = &p;
}

void Scheduler::schedule(std::coroutine_handle<> h) {
    // The Executor is gone and took the frame with it: nothing to resume.
    if (closed_) return;
    ready_.push_back(h);
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

    while (!ready_.empty()) {
        std::coroutine_handle<> next = ready_.front();
        ready_.pop_front();
        next.resume();  // runs until the task suspends or finishes
    }
}

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

void Scheduler::unlink(Root::promise_type& root) noexcept {
    if (root.prev) root.prev->next = root.next;
    if (root.next) root.next->prev = root.prev;
    if (roots_ == &root) roots_ = root.next;
    root.prev = root.next = nullptr;
}

void Scheduler::destroy_all() noexcept {
    closed_ = true;
    ready_.clear();  // handles into frames we are about to destroy
    // Destroying a root destroys the task it awaits, and that task's frame
    // destroys the child it awaits, and so on down the chain.
    while (roots_) {
        Root::promise_type& root = *roots_;
        unlink(root);
        Root::Handle::from_promise(root).destroy();
    }
}

}  // namespace detail

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
