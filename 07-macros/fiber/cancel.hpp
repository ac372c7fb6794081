// Cancellation: cooperative, through std::stop_token. Each task carries a
// stop state (fiber/stop_state.hpp); whoever may stop it (a JoinHandle, a
// join or a select) may ask from any thread, and the task's std::stop_token
// is requested too. The runtime's awaiters (sleep_for, reads, writes,
// accept, connect, awaiting a JoinHandle) watch the state while they wait
// and end early with fiber::Cancelled. Code that never suspends is never
// interrupted: a cancelled task that does not await again simply finishes.
#pragma once

#include <stop_token>

#include "fiber/executor.hpp"
#include "fiber/stop_state.hpp"

namespace fiber {

/// Thrown by an awaiter whose task was asked to stop. Let it propagate:
/// the task unwinds (its destructors run) and whoever cancelled it sees it
/// end. Not a std::exception, as Boost.Thread's thread_interrupted is not:
/// a server loop that logs and goes on after `catch (const
/// std::exception&)` lets it through. Were it caught there, the loop's
/// next await would throw it again at once, and the loop would spin for
/// ever instead of ending. A `catch (...)` does catch it: put
/// `catch (const fiber::Cancelled&) { throw; }` before one.
class Cancelled {
public:
    const char* what() const noexcept { return "fiber: the task was cancelled"; }
};

namespace detail {

// The running task's stop state, or null: outside a task, and for a task
// that nothing can stop. The task's root (its cell) keeps it alive as long
// as the task, and so as long as every awaiter the task suspends in.
inline StopState* current_stop_state() noexcept {
    TaskRoot* root = current_root();
    return root ? root->stop : nullptr;
}

}  // namespace detail

namespace this_task {

/// The running task's stop token: `fiber::this_task::stop_token()
/// .stop_requested()` tells a long computation to give up, and a
/// std::stop_callback on it runs when stop is requested. Empty (never
/// stops) outside a task and for a task spawned with a plain Spawner.
/// (On mingw, destroy such a std::stop_callback only where its callback
/// cannot be running on another thread: see fiber/stop_state.hpp.)
inline std::stop_token stop_token() {
    detail::StopState* state = detail::current_stop_state();
    return state ? state->token() : std::stop_token();
}

/// `stop_token().stop_requested()`, without making a token.
inline bool stop_requested() noexcept {
    detail::StopState* state = detail::current_stop_state();
    return state && state->stop_requested();
}

/// Throws fiber::Cancelled if the running task was asked to stop: a
/// cancellation point for a loop that does not otherwise await.
inline void throw_if_cancelled() {
    if (stop_requested()) throw Cancelled();
}

}  // namespace this_task

}  // namespace fiber
