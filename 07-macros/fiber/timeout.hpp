// timeout(d, task): the task's value, or fiber::TimedOut if it takes longer
// than d. A select between the task and a sleep: whichever loses is
// cancelled, so a timed-out read leaves no wait behind.
#pragma once

#include <chrono>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include "fiber/awaitable.hpp"
#include "fiber/cancel_safe.hpp"
#include "fiber/select.hpp"
#include "fiber/sleep.hpp"
#include "fiber/task.hpp"

namespace fiber {

/// Thrown by timeout() when the time ran out first.
class TimedOut : public std::exception {
public:
    const char* what() const noexcept override { return "fiber: timed out"; }
};

namespace detail {

inline Task<> sleep_until(std::chrono::steady_clock::time_point deadline) {
    co_await Sleep(deadline);
}

// The deadline is taken here, in the coroutine: when the timeout is
// awaited, not when it is made.
template <typename Rep, typename Period, typename B>
Task<AwaitResult<B>> timeout_branch(std::chrono::duration<Rep, Period> limit, B branch) {
    auto outcome = co_await select_branches(std::move(branch), sleep_until(deadline_after(limit)));
    if (outcome.index() == 1) throw TimedOut();
    if constexpr (!std::is_void_v<AwaitResult<B>>) co_return std::get<0>(std::move(outcome));
}

}  // namespace detail

/// `int n = co_await fiber::timeout(100ms, answer());` gives the task's
/// value, rethrows its exception, or throws fiber::TimedOut once `limit`
/// has passed (counted from when the timeout is awaited); the task has
/// been cancelled and has unwound by then. A value that arrives at the
/// same moment as the deadline may win: exactly one of the two does. Any
/// awaitable goes, not only a Task: `co_await fiber::timeout(50ms,
/// fiber::sleep_for(1h))` throws TimedOut. A timed-out read or accept
/// gives back what it took (cancel_safe.hpp): the next one returns it.
template <typename Rep, typename Period, typename A>
    requires detail::Awaitable<A>
auto timeout(std::chrono::duration<Rep, Period> limit, A&& awaitable) {
    return detail::timeout_branch(limit, detail::into_branch(std::forward<A>(awaitable)));
}

}  // namespace fiber
