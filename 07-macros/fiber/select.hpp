// select(a, b, ...): run tasks at the same time; the first to finish wins,
// the others are cancelled. The original's select! drops the losing
// futures; a C++ coroutine cannot be dropped while another thread may be
// running it, so we ask the losers to stop and wait until they have
// unwound: when select returns, their destructors have run and their
// timers and I/O waits are gone. A loser's own error (anything but the
// Cancelled it was asked for), thrown as it unwinds or as it loses the
// race, is reported on stderr, as a detached task's is: never dropped, and
// not rethrown, since select has a winner to give (the winner's value may
// be a connection, which must not be lost for a loser's error).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "fiber/awaitable.hpp"
#include "fiber/cancel_safe.hpp"
#include "fiber/group.hpp"
#include "fiber/task.hpp"

namespace fiber {

namespace detail {

template <typename... T>
class SelectGroup : public Group {
public:
    SelectGroup() : Group(sizeof...(T)) {}

    /// The one winner: the first child to call it with its index. Two
    /// children finishing at once on two workers race on this
    /// compare-exchange, and exactly one of them succeeds.
    bool claim(std::size_t child) noexcept {
        std::size_t none = kNone;
        return winner_.compare_exchange_strong(none, child, std::memory_order_acq_rel);
    }

    // Written by the winner only, read by the parent after all_done().
    std::optional<std::variant<Value<T>...>> value;
    std::exception_ptr error;

private:
    static constexpr std::size_t kNone = sizeof...(T);
    std::atomic<std::size_t> winner_{kNone};
};

// A branch B is a Task<T>, or an operation that can give its value back
// (a read, an accept: see cancel_safe.hpp).
template <std::size_t I, typename G, typename B>
Task<> select_child(std::shared_ptr<G> group, B branch) {
    using T = AwaitResult<B>;
    std::optional<Value<T>> value;
    std::exception_ptr error;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(branch);
            value.emplace();
        } else {
            value.emplace(co_await std::move(branch));
        }
    } catch (...) {
        error = std::current_exception();
    }
    if (group->claim(I)) {
        if (error) {
            group->error = std::move(error);
        } else {
            try {
                group->value.emplace(std::in_place_index<I>, std::move(*value));
            } catch (...) {
                group->error = std::current_exception();
            }
        }
        group->stop.request_stop();  // the losers: each wakes from its awaiter
    } else if (error) {
        report_lost_error("a select loser failed", std::move(error));
    } else {
        // Finished, but another branch won first: on another worker, while
        // this one ran. Its value has nowhere to go; an operation that took
        // it from somewhere (bytes from a socket) puts it back there.
        give_back_dropped(branch, std::move(*value));
    }
    // A loser's result goes now, not when the runtime frees this frame:
    // select must not return while it may still hold a socket.
    value.reset();
    error = nullptr;
    group->child_done();
}

template <typename G, typename... B, std::size_t... I>
std::array<Task<>, sizeof...(B)> select_children(const std::shared_ptr<G>& group,
                                                 std::index_sequence<I...>, B... branches) {
    return {select_child<I>(group, std::move(branches))...};
}

template <typename... B>
Task<std::variant<Value<AwaitResult<B>>...>> select_branches(B... branches) {
    static_assert(sizeof...(B) > 0, "fiber::select: nothing to select from");
    static_assert((!std::is_reference_v<AwaitResult<B>> && ...),
                  "fiber::select: a task that returns a reference would hand it to another thread");
    using Group = SelectGroup<AwaitResult<B>...>;
    auto group = std::make_shared<Group>();
    auto children = select_children(group, std::index_sequence_for<B...>{}, std::move(branches)...);
    co_await run_children(*group, children);
    // Taken out of the group, which a loser's frame may free on another
    // worker: see JoinGroup::take_error().
    if (std::exception_ptr error = std::exchange(group->error, nullptr)) {
        std::rethrow_exception(error);
    }
    co_return std::move(*group->value);
}

}  // namespace detail

/// `auto first = co_await fiber::select(slow(), fast());` runs the tasks
/// concurrently. The first to finish wins: select gives a std::variant
/// whose index() is the winner's position and whose alternative holds its
/// value (std::monostate for void; read it with std::get<I>, since two
/// tasks may return the same type), or rethrows the winner's exception.
/// The losers are asked to stop (their awaiters throw fiber::Cancelled) and
/// have finished unwinding before select returns; a loser's own error is
/// reported on stderr, not rethrown. A loser that never awaits again is
/// waited for: cancellation is cooperative. A stop request
/// for the calling task reaches every child. Must run inside a task.
template <typename... T>
Task<std::variant<Value<T>...>> select(Task<T>... tasks) {
    return detail::select_branches(std::move(tasks)...);
}

/// select of any awaitables, not only Tasks, as join() takes them. A read
/// or an accept stays itself, not wrapped, so that it can give back what it
/// took if it loses (cancel_safe.hpp).
template <typename... A>
    requires(sizeof...(A) > 0 && (detail::Awaitable<A> && ...) &&
             !(detail::is_task<std::remove_cvref_t<A>> && ...))
auto select(A&&... awaitables) {
    return detail::select_branches(detail::into_branch(std::forward<A>(awaitables))...);
}

}  // namespace fiber
