// Task<>: a lazy coroutine that an executor runs or another task awaits.
// At this stage a task returns nothing; an exception that escapes it is
// rethrown in the awaiting task, and out of a spawned task it leaves
// through Executor::run(). Chapter 2 adds values and reports a spawned
// task's exception instead.
#pragma once

#include <coroutine>
#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace fiber {

namespace detail {

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
};

}  // namespace detail

/// A coroutine that produces nothing yet (chapter 2 adds Task<T>). Move-only;
/// the frame belongs to the Task object, and `co_await std::move(task)` runs
/// it to completion before the awaiting coroutine continues.
template <typename T = void>
    requires std::is_void_v<T>
class [[nodiscard]] Task {
public:
    struct promise_type : detail::PromiseBase {
        std::exception_ptr exception;  // what escaped the body, if anything
        Task get_return_object() noexcept { return Task(Handle::from_promise(*this)); }
        void return_void() noexcept {}
        // Kept for the awaiter, which rethrows it in the parent. Rethrowing
        // here (`throw;`) is allowed too, but Clang 16 miscompiles the
        // frame's cleanup after it; storing is the simpler path anyway.
        void unhandled_exception() noexcept { exception = std::current_exception(); }
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
        void await_resume() {
            if (child.promise().exception) std::rethrow_exception(child.promise().exception);
        }
    };

    Awaiter operator co_await() && {
        if (!handle_) {
            throw std::logic_error(
                "fiber::Task: co_await on an empty task (moved from, or awaited already)");
        }
        return Awaiter(std::exchange(handle_, {}));
    }

private:
    explicit Task(Handle h) noexcept : handle_(h) {}
    Handle handle_;
};

}  // namespace fiber
