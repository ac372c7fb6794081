// What join() and select() share: their children run as tasks of their
// own, so that they may run on several workers at once. One stop source
// cancels them all; the parent's own stop reaches them through it (so a
// join inside a select inside a join is cancelled all the way down); and a
// count wakes the parent once the last child has finished, destructors and
// all. The parent never returns while a child still runs: a child may use
// what the parent's frame owns.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <span>
#include <type_traits>
#include <variant>

#include "fiber/stop_state.hpp"
#include "fiber/task.hpp"
#include "fiber/waker.hpp"

namespace fiber {

/// What join() and select() give for a child that returns void.
template <typename T>
using Value = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

namespace detail {

class Group {
public:
    explicit Group(std::size_t children) : remaining_(children + 1) {}
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;

    StopRef stop = StopRef::make();  // every child's stop state

    /// A child's last step. The task the child awaited is over and its
    /// frame is gone (its destructors have run); the child's own frame,
    /// which makes this call, is still alive, and the worker destroys it
    /// only after this step. So the parent may resume (and destroy the
    /// group) before that frame is gone: each child holds a reference of
    /// its own to the group. The last child to finish wakes the parent.
    void child_done() noexcept;

    /// `co_await all_done()`: until every child has called child_done().
    struct AllDone {
        Group& group;
        bool await_ready() noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> self);
        void await_resume() noexcept {}
    };
    AllDone all_done() noexcept { return {*this}; }

    /// `n` children that were never started (spawning them failed).
    void abandon(std::size_t n) noexcept {
        remaining_.fetch_sub(n, std::memory_order_relaxed);  // the parent's unit keeps it above 0
    }

private:
    // One unit per child still running, plus one for the parent until it
    // has published its waker: whoever takes the count to zero knows that
    // the waker is there (the parent) or that nobody waits (the parent's
    // await then does not suspend).
    std::atomic<std::size_t> remaining_;
    Waker waiter_;  // the parent's; written before, and read after, the count
};

/// A child's error that nobody else will see: a select loser's, or a join
/// child's after the first failure. Printed on stderr as "fiber: <what
/// happened>: <what()>", as a detached task's error is: never dropped.
/// fiber::Cancelled is not printed: the stop request asked for it.
void report_lost_error(const char* what_happened, std::exception_ptr error) noexcept;

/// Spawns `children` (each ends with child_done()) on the runtime of the
/// calling task, with the group's token, and waits until all of them have
/// finished. A stop request for the calling task is passed on to them. If
/// a spawn fails, the others are cancelled, and the error rethrown once
/// they have finished.
Task<> run_children(Group& group, std::span<Task<>> children);

}  // namespace detail

}  // namespace fiber
