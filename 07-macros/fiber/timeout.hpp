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

}  // namespace detail

/// `int n = co_await fiber::timeout(100ms, answer());` gives the task's
/// value, rethrows its exception, or throws fiber::TimedOut once `limit`
/// has passed (counted from when the timeout is awaited); the task has
/// been cancelled and has unwound by then. A value that arrives at the
/// same moment as the deadline may win: exactly one of the two does.
template <typename Rep, typename Period, typename T>
Task<T> timeout(std::chrono::duration<Rep, Period> limit, Task<T> task) {
    auto outcome =
        co_await select(std::move(task), detail::sleep_until(detail::deadline_after(limit)));
    if (outcome.index() == 1) throw TimedOut();
    if constexpr (!std::is_void_v<T>) co_return std::get<0>(std::move(outcome));
}

/// timeout of any awaitable, not only a Task: `co_await
/// fiber::timeout(50ms, fiber::sleep_for(1h))` throws TimedOut.
template <typename Rep, typename Period, typename A>
    requires(detail::Awaitable<A> && !detail::is_task<std::remove_cvref_t<A>>)
auto timeout(std::chrono::duration<Rep, Period> limit, A&& awaitable) {
    return timeout(limit, detail::into_task(std::forward<A>(awaitable)));
}

}  // namespace fiber
