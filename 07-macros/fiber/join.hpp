// join(a, b, ...): run tasks at the same time, wait for all of them, and
// get every result in a tuple. The original's join! polls its futures in
// turn on one thread; here each child is a task of its own, so they may run
// on several workers at once. If one throws, the others are cancelled and
// the first exception is rethrown, but only once every child has finished;
// a later child's own error (not Cancelled) is reported on stderr.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "fiber/awaitable.hpp"
#include "fiber/cancel_safe.hpp"
#include "fiber/group.hpp"
#include "fiber/task.hpp"

namespace fiber {

namespace detail {

// What a join keeps of a branch after it finished: the operation itself
// if it can give its value back (a read, an accept), else nothing.
template <typename B>
using Kept = std::conditional_t<GivesBack<B>, B, std::monostate>;

template <typename... B>
class JoinGroup : public Group {
public:
    JoinGroup() : Group(sizeof...(B)) {}

    // Each child writes its own slots, on its own worker; the parent reads
    // them all after the count (see Group) says every child is done.
    std::tuple<std::optional<Value<AwaitResult<B>>>...> values;
    std::tuple<std::optional<Kept<B>>...> kept;

    void fail(std::exception_ptr e) noexcept {
        // The first failure wins; the later ones are reported, never
        // dropped (except Cancelled: this very request causes them).
        if (failed_.exchange(true, std::memory_order_acq_rel)) {
            report_lost_error("a join child failed after another", std::move(e));
            return;
        }
        error_ = std::move(e);
        stop.request_stop();
    }
    // After all_done(): the first failure, or null. Taken out, not copied:
    // the last child's frame may free the group on another worker after the
    // parent has resumed, and the exception must not go with it while the
    // caller still reads it. (That would be no race, since an exception's
    // count is atomic, but the count lives in the C++ runtime, where
    // ThreadSanitizer cannot see it, and it would report one.)
    std::exception_ptr take_error() noexcept { return std::exchange(error_, nullptr); }

    template <std::size_t... I>
    std::tuple<Value<AwaitResult<B>>...> take(std::index_sequence<I...>) {
        return std::tuple<Value<AwaitResult<B>>...>(std::move(*std::get<I>(values))...);
    }

    /// The join failed: the values of the branches that finished are
    /// dropped. Those that can go back (bytes read, connections accepted)
    /// do, so that a failed join loses nothing that a read took.
    template <std::size_t... I>
    void give_back(std::index_sequence<I...>) noexcept {
        (give_back_one<I>(), ...);
    }

private:
    template <std::size_t I>
    void give_back_one() noexcept {
        auto& value = std::get<I>(values);
        auto& branch = std::get<I>(kept);
        if constexpr (GivesBack<std::remove_cvref_t<decltype(*branch)>>) {
            if (value && branch) give_back_dropped(*branch, std::move(*value));
        }
    }

    std::atomic<bool> failed_{false};
    std::exception_ptr error_;  // written by the first to fail, read after all_done()
};

template <std::size_t I, typename G, typename B>
Task<> join_child(std::shared_ptr<G> group, B branch) {
    try {
        if constexpr (std::is_void_v<AwaitResult<B>>) {
            co_await std::move(branch);
            std::get<I>(group->values).emplace();
        } else {
            std::get<I>(group->values).emplace(co_await std::move(branch));
        }
        if constexpr (GivesBack<B>) std::get<I>(group->kept).emplace(std::move(branch));
    } catch (...) {
        group->fail(std::current_exception());
    }
    // The task's frame is gone by now (the co_await destroyed it): its
    // destructors have run before the parent can resume. This frame is
    // not gone yet: see Group::child_done().
    group->child_done();
}

template <typename G, typename... B, std::size_t... I>
std::array<Task<>, sizeof...(B)> join_children(const std::shared_ptr<G>& group,
                                               std::index_sequence<I...>, B... branches) {
    return {join_child<I>(group, std::move(branches))...};
}

template <typename... B>
Task<std::tuple<Value<AwaitResult<B>>...>> join_branches(B... branches) {
    static_assert(sizeof...(B) > 0, "fiber::join: nothing to join");
    static_assert((!std::is_reference_v<AwaitResult<B>> && ...),
                  "fiber::join: a task that returns a reference would hand it to another thread");
    auto group = std::make_shared<JoinGroup<B...>>();
    // Each child holds a reference to the group: should the executor
    // destroy this frame before the children's, they still find it.
    auto children = join_children(group, std::index_sequence_for<B...>{}, std::move(branches)...);
    co_await run_children(*group, children);
    if (std::exception_ptr error = group->take_error()) {
        group->give_back(std::index_sequence_for<B...>{});
        std::rethrow_exception(error);
    }
    co_return group->take(std::index_sequence_for<B...>{});
}

}  // namespace detail

/// `auto [a, b] = co_await fiber::join(task_a(), task_b());` runs the tasks
/// concurrently and gives a std::tuple of their results, in order; a task
/// that returns void gives std::monostate. If one throws, the others are
/// asked to stop (their awaiters throw fiber::Cancelled), and join rethrows
/// the first exception once all of them have finished; a read or an accept
/// that had finished gives back what it took (cancel_safe.hpp). A stop
/// request for the calling task reaches every child. Must run inside a task.
template <typename... T>
Task<std::tuple<Value<T>...>> join(Task<T>... tasks) {
    return detail::join_branches(std::move(tasks)...);
}

/// join of any awaitables, not only Tasks: `co_await fiber::join(handle,
/// fiber::sleep_for(10ms))`. An rvalue is moved into its branch; an lvalue
/// (a JoinHandle the caller keeps) is awaited where it is.
template <typename... A>
    requires(sizeof...(A) > 0 && (detail::Awaitable<A> && ...) &&
             !(detail::is_task<std::remove_cvref_t<A>> && ...))
auto join(A&&... awaitables) {
    return detail::join_branches(detail::into_branch(std::forward<A>(awaitables))...);
}

}  // namespace fiber
