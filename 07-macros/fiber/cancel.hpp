// Cancellation: cooperative, through std::stop_token. Each task carries a
// token; whoever holds its stop source (a JoinHandle, a join or a select)
// may request stop from any thread. The runtime's awaiters (sleep_for,
// reads, writes, accept, connect, awaiting a JoinHandle) watch the token
// while they wait and end early with fiber::Cancelled. Code that never
// suspends is never interrupted: a cancelled task that does not await again
// simply finishes.
#pragma once

#include <exception>
#include <stop_token>

#include "fiber/executor.hpp"

namespace fiber {

/// Thrown by an awaiter whose task was asked to stop. Let it propagate:
/// the task unwinds (its destructors run) and whoever cancelled it sees it
/// end. Not a std::system_error, so an I/O loop's `catch (system_error&)`
/// does not swallow it.
class Cancelled : public std::exception {
public:
    const char* what() const noexcept override { return "fiber: the task was cancelled"; }
};

namespace detail {

// The running task's token; an empty one outside a task. A pointer into the
// task's root promise: it lives as long as the task, so as long as every
// awaiter the task suspends in.
inline const std::stop_token* current_stop_token() noexcept {
    static const std::stop_token none;
    Root::promise_type* root = current_root();
    return root ? &root->stop_token : &none;
}

}  // namespace detail

namespace this_task {

/// The running task's stop token: `fiber::this_task::stop_token()
/// .stop_requested()` tells a long computation to give up, and a
/// std::stop_callback on it runs when stop is requested. Empty (never
/// stops) outside a task and for a task spawned with a plain Spawner.
inline std::stop_token stop_token() noexcept { return *detail::current_stop_token(); }

/// `stop_token().stop_requested()`, without copying the token.
inline bool stop_requested() noexcept { return detail::current_stop_token()->stop_requested(); }

/// Throws fiber::Cancelled if the running task was asked to stop: a
/// cancellation point for a loop that does not otherwise await.
inline void throw_if_cancelled() {
    if (stop_requested()) throw Cancelled();
}

}  // namespace this_task

}  // namespace fiber
