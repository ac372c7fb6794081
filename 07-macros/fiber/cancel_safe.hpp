// Cancel safety: a branch of select, join or timeout runs as a task of its
// own, on any worker, so a read may take bytes from the socket while
// another branch wins on another worker. Its count then has nowhere to go.
// Rather than lose the bytes, an operation that can put back what it took
// says so with give_back(); select and join call it for every value they
// drop, and the next read (or accept) returns that value first.
#pragma once

#include <atomic>
#include <exception>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiber/awaitable.hpp"
#include "fiber/group.hpp"

namespace fiber::detail {

/// An awaitable that can take its value back after it finished: `a` was
/// awaited and gave `v`, which select or join then dropped (the branch lost,
/// or the join failed); `a.give_back(std::move(v))` returns it to where it
/// came from, so that no byte and no connection is ever lost.
template <typename A>
concept GivesBack = Awaitable<A> && requires(A& a, AwaitResult<A> value) {
    a.give_back(std::move(value));
};

/// The same for an awaitable the caller holds and awaits in place (a
/// JoinHandle): the value goes back into it.
template <typename A>
concept HeldGivesBack = Awaitable<A&> && requires(A& a, AwaitResult<A&> value) {
    a.give_back(std::move(value));
};

/// A branch awaited where the caller holds it, able to give back to it.
template <typename A>
class Held {
public:
    explicit Held(A& awaitable) noexcept : awaitable_(&awaitable) {}
    decltype(auto) operator co_await() && { return awaiter_of(*awaitable_); }
    void give_back(AwaitResult<A&> value) { awaitable_->give_back(std::move(value)); }

private:
    A* awaitable_;  // the caller's: it outlives the join, select or timeout
};

/// A branch of join, select or timeout: an operation that gives back (a
/// read, an accept, a held JoinHandle) is kept as it is, so that its branch
/// can call give_back(); anything else becomes a Task (into_task).
template <typename A>
auto into_branch(A&& awaitable) {
    using Plain = std::remove_cvref_t<A>;
    if constexpr (!std::is_lvalue_reference_v<A> && GivesBack<Plain>) {
        return Plain(std::move(awaitable));
    } else if constexpr (std::is_lvalue_reference_v<A> && HeldGivesBack<Plain>) {
        return Held<Plain>(awaitable);
    } else {
        return into_task(std::forward<A>(awaitable));
    }
}

/// Puts back the value a branch dropped, if its operation can take it.
/// Never throws: a value that cannot be put back (out of memory) is
/// reported on stderr, as a lost error is.
template <typename B, typename V>
void give_back_dropped(B& branch, V&& value) noexcept {
    if constexpr (GivesBack<B>) {
        try {
            branch.give_back(std::forward<V>(value));
        } catch (...) {
            report_lost_error("a dropped value could not be given back", std::current_exception());
        }
    }
}

/// Bytes that reads took and gave back, in front of the socket's own: the
/// next read returns them first. A read takes the mutex only when the flag
/// says there is something, so reads that never lost pay one load.
class UnreadBytes {
public:
    bool empty() const noexcept { return !pending_.load(std::memory_order_acquire); }
    /// Moves up to into.size() bytes out, oldest first; returns how many.
    std::size_t take(std::span<std::byte> into);
    /// Puts `bytes` in front of what is there: they were taken before it.
    void put_back(std::span<const std::byte> bytes);

private:
    std::mutex mutex_;
    std::vector<std::byte> bytes_;      // under mutex_
    std::atomic<bool> pending_{false};  // !bytes_.empty(), for the check without the lock
};

/// Values that operations took and gave back (accepted connections), for
/// the next operation to return first, newest first: each came back after
/// the ones before it were taken.
template <typename T>
class GivenBack {
public:
    bool empty() const noexcept { return !pending_.load(std::memory_order_acquire); }
    std::optional<T> take() {
        std::lock_guard lock(mutex_);
        if (values_.empty()) return std::nullopt;
        T value = std::move(values_.front());
        values_.pop_front();
        pending_.store(!values_.empty(), std::memory_order_release);
        return value;
    }
    void put_back(T value) {
        std::lock_guard lock(mutex_);
        values_.push_front(std::move(value));
        pending_.store(true, std::memory_order_release);
    }

private:
    std::mutex mutex_;
    std::deque<T> values_;  // under mutex_
    std::atomic<bool> pending_{false};
};

}  // namespace fiber::detail
