// Task<T>: a lazy coroutine that an executor runs or another task awaits.
// `co_await` on a Task<T> gives the T it returned, or rethrows the exception
// that escaped it, in the awaiting task. No type erasure: the value lives in
// the child's promise until the parent takes it.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include "fiber/frame_pool.hpp"

namespace fiber {

namespace detail {

struct TaskAccess;  // the runtime's way to the frame (scheduler.hpp)

// What every task's promise holds: the coroutine to resume when it ends.
struct PromiseBase {
    std::coroutine_handle<> continuation = std::noop_coroutine();

    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        // Symmetric transfer: the returned handle is resumed as a tail call.
        // Calling continuation.resume() here instead would nest one stack
        // frame per finished child, and a loop of a million co_awaits would
        // overflow the stack (tests/stack_test.cpp).
        template <typename Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
            return self.promise().continuation;
        }
        void await_resume() noexcept {}
    };

    // Lazy: the body does not start until the task is awaited or spawned.
    std::suspend_always initial_suspend() noexcept { return {}; }
    FinalAwaiter final_suspend() noexcept { return {}; }

    // Frames come from blocks the threads recycle (frame_pool.hpp): a
    // frame freed on one worker is taken back by that worker's next one.
    static void* operator new(std::size_t size) { return allocate_block(size); }
    static void operator delete(void* frame, std::size_t size) noexcept { free_block(frame, size); }
};

// The outcome of a task: nothing yet, a value, or an exception. A reference
// result is stored as a pointer, since a variant cannot hold a reference.
template <typename T>
class Result {
    using Stored = std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*, T>;
    std::variant<std::monostate, Stored, std::exception_ptr> state_;

public:
    template <typename U>
    void set_value(U&& value) {
        if constexpr (std::is_reference_v<T>) {
            state_.template emplace<1>(std::addressof(value));
        } else {
            state_.template emplace<1>(std::forward<U>(value));
        }
    }
    void set_exception(std::exception_ptr e) noexcept { state_.template emplace<2>(e); }
    bool ready() const noexcept { return state_.index() != 0; }

    // Moves the value out (or rethrows): call once.
    T get() {
        if (state_.index() == 2) std::rethrow_exception(std::get<2>(state_));
        if constexpr (std::is_reference_v<T>) {
            return static_cast<T>(*std::get<1>(state_));
        } else {
            return std::move(std::get<1>(state_));
        }
    }
};

template <>
class Result<void> {
    std::exception_ptr error_;
    bool done_ = false;

public:
    void set_value() noexcept { done_ = true; }
    void set_exception(std::exception_ptr e) noexcept {
        error_ = e;
        done_ = true;
    }
    bool ready() const noexcept { return done_; }
    void get() {
        if (error_) std::rethrow_exception(error_);
    }
};

template <typename T>
struct Promise : PromiseBase {
    Result<T> result;
    template <typename U>
        requires std::convertible_to<U&&, T>
    void return_value(U&& value) { result.set_value(std::forward<U>(value)); }
    void unhandled_exception() noexcept { result.set_exception(std::current_exception()); }
};

template <>
struct Promise<void> : PromiseBase {
    Result<void> result;
    void return_void() noexcept { result.set_value(); }
    void unhandled_exception() noexcept { result.set_exception(std::current_exception()); }
};

}  // namespace detail

/// A coroutine that produces a T (or nothing, for Task<>). Move-only; the
/// frame belongs to the Task object, and `co_await std::move(task)` runs it
/// to completion, then gives its value or rethrows its exception.
template <typename T = void>
class [[nodiscard]] Task {
public:
    struct promise_type : detail::Promise<T> {
        Task get_return_object() noexcept { return Task(Handle::from_promise(*this)); }
    };
    using Handle = std::coroutine_handle<promise_type>;

    Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Task& operator=(Task&& other) noexcept {
        if (this != &other) {
            if (handle_) handle_.destroy();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    ~Task() {
        if (handle_) handle_.destroy();
    }

    // Awaiting takes the frame out of the Task: a task runs once. The
    // awaiter, which lives in the parent's frame, destroys the child's frame
    // when the parent resumes (or when the parent itself is destroyed).
    struct Awaiter {
        Handle child;
        Awaiter(Handle h) noexcept : child(h) {}
        Awaiter(Awaiter&&) = delete;
        ~Awaiter() { child.destroy(); }

        bool await_ready() noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
            child.promise().continuation = parent;
            return child;  // start the child as a tail call, not a nested call
        }
        T await_resume() { return child.promise().result.get(); }
    };

    Awaiter operator co_await() && {
        if (!handle_) {
            throw std::logic_error(
                "fiber::Task: co_await on an empty task (moved from, or awaited already)");
        }
        return Awaiter(std::exchange(handle_, {}));
    }

private:
    friend struct detail::TaskAccess;
    explicit Task(Handle h) noexcept : handle_(h) {}
    Handle handle_;
};

}  // namespace fiber
