// block_on(task): run one task on a fresh executor, on this thread, and
// hand back what it returned, or rethrow what it threw.
#pragma once

#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "fiber/executor.hpp"
#include "fiber/task.hpp"

namespace fiber {

namespace detail {

// Throws std::logic_error if a task is running on this thread: block_on
// would block it, and every other task its executor runs here.
void refuse_inside_a_task();

// The root task of block_on: awaits `task`, stores its outcome where
// block_on can read it after run() returns, and stops the executor: tasks
// that `task` spawned and that still wait (an accept loop, a long sleep)
// must not keep block_on from returning.
template <typename T>
Task<> capture(Task<T> task, Result<T>& out, Executor& executor) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(task);
            out.set_value();
        } else {
            out.set_value(co_await std::move(task));
        }
    } catch (...) {
        out.set_exception(std::current_exception());
    }
    executor.stop();
}

}  // namespace detail

/// Runs `task` to completion on the calling thread and returns its result.
/// An exception that escapes the task is rethrown here. Tasks it spawns run
/// on the same executor; those still pending when `task` finishes are
/// destroyed (after the reactor stops) before block_on returns. Inside a
/// task it throws std::logic_error at once: co_await the task instead.
template <typename T>
T block_on(Task<T> task) {
    detail::refuse_inside_a_task();
    detail::Result<T> result;
    auto [executor, spawner] = new_executor_and_spawner();
    spawner.spawn(detail::capture(std::move(task), result, executor));
    executor.run();
    if (!result.ready()) {
        throw std::logic_error(
            "fiber::block_on: the task is suspended and nothing is left to wake it");
    }
    return result.get();
}

}  // namespace fiber
