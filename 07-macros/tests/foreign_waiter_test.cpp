// A handle registered with one executor's reactor and waited on by a task
// of another executor: its readiness reaches that task, and the reactor
// goes on polling for the tasks of its own executor.
#include <gtest/gtest.h>

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "common/os.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/executor.hpp"

#ifndef _WIN32
#include <unistd.h>
#endif

namespace {

// A one-way signal between plain threads.
struct Beacon {
    std::mutex mutex;
    std::condition_variable changed;
    bool raised = false;
    void raise() {
        std::lock_guard lock(mutex);
        raised = true;
        changed.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex);
        changed.wait(lock, [this] { return raised; });
    }
};

// A blocking write of one byte from a plain thread (the writing end is
// not registered with any reactor).
void write_a_byte(fiber::common::native_handle h) {
    const char byte = 'x';
#ifdef _WIN32
    ASSERT_EQ(::send(h, &byte, 1, 0), 1);
#else
    ASSERT_EQ(::write(h, &byte, 1), 1);
#endif
}

// Waits until the handle is readable, and writes the byte that makes it so
// only once the wait is registered: the readiness then certainly arrives
// as an event that wakes this task, never as a state it finds at once.
struct ReadableAfterWrite {
    fiber::ReadinessAwaiter wait;
    fiber::common::native_handle writer;

    bool await_ready() { return false; }
    bool await_suspend(std::coroutine_handle<> self) {
        const fiber::common::native_handle w = writer;  // *this may be gone after the wait
        const bool waits = wait.await_suspend(self);
        write_a_byte(w);
        return waits;
    }
    std::uint64_t await_resume() { return wait.await_resume(); }
};

}  // namespace

TEST(ForeignWaiter, AReactorThatWakesAnotherExecutorsTaskGoesOnPollingForItsOwn) {
    // Executor A registers two pipes with its reactor: it reads the first
    // itself, and hands the second to a task of executor B. Once A's
    // reactor has woken B's task, A's own read must still see its data.
    // Plain variables, not structured bindings: the threads' lambdas below
    // capture them, which Clang 14 refuses for a binding.
    const auto own_pipe = fiber::common::make_pipe();
    const auto lent_pipe = fiber::common::make_pipe();
    const fiber::common::native_handle own_r = own_pipe.first, own_w = own_pipe.second;
    const fiber::common::native_handle lent_r = lent_pipe.first, lent_w = lent_pipe.second;
    std::optional<fiber::AsyncFd> lent;  // outlives both executors
    std::size_t own_read = 0;
    std::size_t lent_read = 0;
    Beacon handed;
    Beacon lent_done;

    auto a_task = [](fiber::common::native_handle own, fiber::common::native_handle r,
                     std::optional<fiber::AsyncFd>& lent, Beacon& handed,
                     std::size_t& n) -> fiber::Task<> {
        fiber::AsyncFd in(own);
        lent.emplace(r);  // registered with A's reactor
        handed.raise();
        std::byte buffer[8];
        n = co_await in.read(buffer);  // A's workers go idle and ask A's reactor to poll
    };
    auto b_task = [](fiber::AsyncFd& in, fiber::common::native_handle w, Beacon& done,
                     std::size_t& n) -> fiber::Task<> {
        // A new handle starts optimistic (readable): forget that first.
        const std::uint64_t tick = co_await in.readable();
        in.clear_readiness(fiber::detail::kReadable, tick);
        // Named, not a temporary: GCC 12 destroys a temporary aggregate
        // awaiter twice (GCC bug 100611).
        ReadableAfterWrite readable{in.readable(), w};
        (void)co_await readable;  // woken by A's reactor
        std::byte buffer[8];
        n = co_await in.read(buffer);
        done.raise();
    };

    std::thread a([&] {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(a_task(own_r, lent_r, lent, handed, own_read));
        executor.run();
    });
    handed.wait();
    std::thread b([&] {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(b_task(*lent, lent_w, lent_done, lent_read));
        executor.run();
    });
    lent_done.wait();
    write_a_byte(own_w);  // only A's reactor can see this
    a.join();
    b.join();
    EXPECT_EQ(lent_read, 1u);
    EXPECT_EQ(own_read, 1u);
    lent.reset();
    fiber::common::close_handle(own_w);
    fiber::common::close_handle(lent_w);
}
