// Starting a join's or a select's children, and waiting for the last one.
#include "fiber/group.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <utility>

#include "fiber/cancel.hpp"
#include "fiber/executor.hpp"

namespace fiber::detail {

void Group::child_done() noexcept {
    // acq_rel: our writes (the child's result) reach the parent, and the
    // parent's waker, written before its own decrement, reaches us.
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) std::move(waiter_).wake();
}

bool Group::AllDone::await_suspend(std::coroutine_handle<> self) {
    group.waiter_ = current_waker(self);
    // Our unit goes last: from here on the last child may take the waker
    // and resume us on another worker, so nothing below touches *this.
    if (group.remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return true;
    group.waiter_ = Waker();  // every child finished first: nobody will wake us
    return false;
}

void report_lost_error(const char* what_happened, std::exception_ptr error) noexcept {
    try {
        std::rethrow_exception(std::move(error));
    } catch (const Cancelled&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fiber: %s: %s\n", what_happened, e.what());
    } catch (...) {
        std::fprintf(stderr, "fiber: %s with a non-standard exception\n", what_happened);
    }
}

namespace {

// The parent's stop callback: passes the request on to the children.
struct PassOn {
    StopState* children;  // the group's: the parent's frame holds the group
    void operator()() const noexcept { children->request_stop(); }
};

}  // namespace

Task<> run_children(Group& group, std::span<Task<>> children) {
    TaskRoot* root = current_root();
    if (!root) throw std::logic_error("fiber::join/select: not inside a task run by a runtime");
    // Registered before the children start, and kept until they have all
    // finished: a request that comes at any time reaches every one of them.
    StopCallback pass_on(root->stop, PassOn{group.stop.get()});
    std::exception_ptr failed;
    std::size_t spawned = 0;
    try {
        for (Task<>& child : children) {
            // The scheduler runs this task, so it is alive; it destroys the
            // child's frame if it cannot take it.
            current_scheduler()->spawn(std::move(child), group.stop);
            ++spawned;
        }
    } catch (...) {
        failed = std::current_exception();
        group.stop.request_stop();
        group.abandon(children.size() - spawned);
    }
    co_await group.all_done();
    if (failed) std::rethrow_exception(failed);
}

}  // namespace fiber::detail
