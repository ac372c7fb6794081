// The cooperative budget: how many operations a task may finish without
// suspending before it has to let the others run. A read of a socket that
// always has data never waits, so a loop of such reads would keep the
// executor's thread for ever: no other task would run, no timer would
// fire, no other socket would be read. So every operation that could wait
// but finds itself ready at once spends one unit of the running task's
// budget; once none is left, it suspends anyway, and its task goes to the
// back of the queue as yield_now() puts it. The executor refills the
// budget each time it resumes a task. Tokio does the same (coop budget).
#pragma once

namespace fiber::detail {

// Operations per turn of a task. Tokio's number: a trip through the queue
// every 128 operations costs nothing measurable, and a turn of 128 reads
// or accepts still ends within a fraction of a millisecond.
inline constexpr unsigned kBudget = 128;

// What the running task has left of its budget. Only the thread that runs
// the task touches it, so it needs no atomics. constinit: no dynamic
// initialisation, so no wrapper call on each use.
inline constinit thread_local unsigned t_budget = kBudget;

// The executor, each time it resumes a task.
inline void reset_budget() noexcept { t_budget = kBudget; }

// An operation that could have waited is ready at once. true: the task
// goes on. false: the budget is spent; the caller suspends the task and
// queues it again (its own Waker, woken at once).
[[nodiscard]] inline bool spend_budget() noexcept {
    if (t_budget == 0) return false;
    --t_budget;
    return true;
}

// The executor, after a task's turn: did it use up its budget?
inline bool budget_spent() noexcept { return t_budget == 0; }

}  // namespace fiber::detail
