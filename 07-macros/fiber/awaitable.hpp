// Any awaitable as a Task, for join, select and timeout: they run each
// branch as a task of its own, so a branch that is not a Task (a
// sleep_for, a JoinHandle, a user's awaitable) is wrapped in one small
// coroutine that awaits it. A Task goes through as it is, with no frame
// added.
#pragma once

#include <type_traits>
#include <utility>

#include "fiber/task.hpp"

namespace fiber::detail {

// What `co_await a` would await: a's operator co_await (a member or a free
// function), or a itself. Only ever named in decltype.
template <typename A>
decltype(auto) awaiter_of(A&& a) {
    if constexpr (requires { static_cast<A&&>(a).operator co_await(); }) {
        return static_cast<A&&>(a).operator co_await();
    } else if constexpr (requires { operator co_await(static_cast<A&&>(a)); }) {
        return operator co_await(static_cast<A&&>(a));
    } else {
        return static_cast<A&&>(a);
    }
}

/// Something a task can `co_await`, as it is passed (an lvalue or an rvalue).
template <typename A>
concept Awaitable = requires(A&& a) {
    awaiter_of(static_cast<A&&>(a)).await_ready();
    awaiter_of(static_cast<A&&>(a)).await_resume();
};

/// What `co_await a` gives.
template <typename A>
using AwaitResult = decltype(awaiter_of(std::declval<A>()).await_resume());

template <typename T>
inline constexpr bool is_task = false;
template <typename T>
inline constexpr bool is_task<Task<T>> = true;

// An awaitable the caller holds (an lvalue): awaited where it is. The
// caller keeps it alive until the join, select or timeout has returned,
// as it would for its own `co_await`.
template <typename A>
Task<AwaitResult<A&>> await_held(A& awaitable) {
    co_return co_await awaitable;
}

// An awaitable handed over (an rvalue): moved into the frame, which owns
// it from then on, as a Task owns its arguments.
template <typename A>
Task<AwaitResult<A>> await_owned(A awaitable) {
    co_return co_await std::move(awaitable);
}

/// A branch of join, select or timeout, as a Task.
template <typename A>
    requires Awaitable<A>
auto into_task(A&& awaitable) {
    using Plain = std::remove_cvref_t<A>;
    if constexpr (std::is_lvalue_reference_v<A>) {
        return await_held(awaitable);
    } else if constexpr (is_task<Plain>) {
        return Plain(std::move(awaitable));
    } else {
        return await_owned<Plain>(std::move(awaitable));
    }
}

}  // namespace fiber::detail
