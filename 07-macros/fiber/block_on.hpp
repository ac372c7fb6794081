// block_on(task): run one task on this thread, and hand back what it
// returned, or rethrow what it threw. Each thread keeps a runtime for it,
// made on first use: one worker, the thread itself. block_on of a task
// that never suspends is a plain call of its coroutine, with no queue and
// no lock; one that suspends runs the worker loop until the task is done.
#pragma once

#include <coroutine>
#include <cstddef>
#include <stdexcept>
#include <utility>

#include "fiber/executor.hpp"
#include "fiber/task.hpp"

namespace fiber {

namespace detail {

// Runs `top`, the frame of block_on's task, as the task whose root is
// `root`: with `workers` 1, on the thread's own runtime; with any other
// count, on a new runtime of `workers` threads, 0 meaning the default.
// Throws std::logic_error, and runs nothing, if a task runs on this thread.
// Returns once the task has finished, or once nothing is left that could
// wake it; the tasks it spawned that still wait are destroyed by then.
void block_on_root(TaskRoot& root, std::coroutine_handle<> top, std::size_t workers);

template <typename T>
T block_on(Task<T> task, std::size_t workers) {
    // The awaiter owns the frame (and destroys it on the way out); the
    // task's result stays in it until await_resume() takes it. Its
    // continuation is the no-op coroutine: when the task returns, the
    // resume that ran its last step simply returns.
    typename Task<T>::Awaiter frame = std::move(task).operator co_await();
    TaskRoot root;
    block_on_root(root, frame.child, workers);
    if (!frame.child.done()) {
        throw std::logic_error(
            "fiber::block_on: the task is suspended and nothing is left to wake it");
    }
    return frame.await_resume();
}

}  // namespace detail

/// Runs `task` to completion on the calling thread and returns its result.
/// An exception that escapes the task is rethrown here. Tasks it spawns run
/// on the same runtime, on this thread; those still pending when `task`
/// finishes are destroyed (after the reactor stops) before block_on
/// returns. The runtime is the thread's own and is reused by the next
/// block_on. Inside a task it throws std::logic_error at once: co_await
/// the task instead.
template <typename T>
T block_on(Task<T> task) {
    return detail::block_on(std::move(task), 1);
}

}  // namespace fiber
