// Wakers fired from other threads: the executor sleeps while it waits and
// never misses a wake-up.
#include <gtest/gtest.h>

#include <thread>
#include <utility>
#include <vector>

#include "common/testing/wine.hpp"
#include "fiber/block_on.hpp"
#include "park.hpp"

namespace {

// Parks, and hands its waker to a new thread that wakes it at once: the
// wake races with the executor going to sleep.
struct WakeFromThread {
    std::thread* thread;
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) {
        *thread = std::thread([w = fiber::current_waker(self)]() mutable { std::move(w).wake(); });
    }
    void await_resume() noexcept {}
};

fiber::Task<int> wake_from_threads(int rounds) {
    int resumed = 0;
    for (int i = 0; i < rounds; ++i) {
        std::thread t;
        co_await WakeFromThread{&t};
        t.join();
        ++resumed;
    }
    co_return resumed;
}

}  // namespace

TEST(CrossThread, WakeFromAnotherThreadResumesTheTask) {
    EXPECT_EQ(fiber::block_on(wake_from_threads(1)), 1);
}

TEST(CrossThread, WakeFromAForeignThreadIsNeverLost) {
    // A lost wake-up leaves run() asleep for ever: the test then fails on
    // CTest's time limit instead of passing. A thread start costs ~6 ms
    // under wine: fewer rounds there (common/testing/wine.hpp).
    const int rounds = fiber::common::running_under_wine() ? 4 : 20;
    for (int round = 0; round < rounds; ++round) {
        EXPECT_EQ(fiber::block_on(wake_from_threads(100)), 100);
    }
}

TEST(CrossThread, ManyTasksWokenFromManyThreads) {
    constexpr int kTasks = 32;
    int done = 0;
    auto task = [](int& done) -> fiber::Task<> {
        co_await wake_from_threads(10);
        ++done;
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    for (int i = 0; i < kTasks; ++i) spawner.spawn(task(done));
    executor.run();
    EXPECT_EQ(done, kTasks);
}

TEST(CrossThread, RunWaitsForAWakerHeldByAnotherThread) {
    // A task parks; a second task hands its waker to a thread. While that
    // thread holds the waker, run() must wait for it instead of returning.
    fiber::Waker slot;
    bool resumed = false;
    std::thread holder;
    auto parked = [&]() -> fiber::Task<> {
        co_await Park{&slot};
        resumed = true;
    };
    auto hand_over = [&]() -> fiber::Task<> {
        holder = std::thread([w = std::move(slot)]() mutable { std::move(w).wake(); });
        co_return;
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(parked());
        spawner.spawn(hand_over());
        executor.run();
        EXPECT_TRUE(resumed);
    }
    holder.join();
}

TEST(CrossThread, WakerDroppedOnAnotherThreadLetsRunReturn) {
    fiber::Waker slot;
    bool resumed = false;
    std::thread dropper;
    auto parked = [&]() -> fiber::Task<> {
        co_await Park{&slot};
        resumed = true;
    };
    auto hand_over = [&]() -> fiber::Task<> {
        dropper = std::thread([w = std::move(slot)]() mutable { w = fiber::Waker(); });
        co_return;
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(parked());
        spawner.spawn(hand_over());
        executor.run();  // returns once the thread has dropped the waker
        dropper.join();
    }
    EXPECT_FALSE(resumed);
}
