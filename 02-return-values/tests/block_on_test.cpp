// block_on runs one task on the calling thread and returns its result.
#include <gtest/gtest.h>

#include <coroutine>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/testing/live_counter.hpp"
#include "fiber/block_on.hpp"
#include "fiber/executor.hpp"
#include "fiber/waker.hpp"
#include "fiber/yield.hpp"
#include "park.hpp"

using fiber::common::LiveCounter;

namespace {

fiber::Task<int> yield_then(int v, int times) {
    for (int i = 0; i < times; ++i) co_await fiber::yield_now();
    co_return v;
}

// A gate: a task waits at it until another task opens it. The waiter's
// Waker is kept under a lock: the opener may run on another thread.
struct Gate {
    std::mutex mutex;
    bool open = false;
    fiber::Waker waiter;

    void open_it() {
        fiber::Waker waker;
        {
            std::lock_guard lock(mutex);
            open = true;
            waker = std::move(waiter);
        }
        if (waker) std::move(waker).wake();
    }

    struct Wait {
        Gate& gate;
        bool await_ready() noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> self) {
            std::lock_guard lock(gate.mutex);
            if (gate.open) return false;
            gate.waiter = fiber::current_waker(self);
            return true;
        }
        void await_resume() noexcept {}
    };
};

fiber::Task<int> pass(Gate& gate) {
    co_await Gate::Wait{gate};
    co_return 1;
}

}  // namespace

TEST(BlockOn, ReturnsTheValue) { EXPECT_EQ(fiber::block_on(yield_then(5, 3)), 5); }

TEST(BlockOn, VoidTask) {
    int n = 0;
    auto bump = [](int& n) -> fiber::Task<> {
        co_await fiber::yield_now();
        ++n;
    };
    fiber::block_on(bump(n));
    EXPECT_EQ(n, 1);
}

TEST(BlockOn, RethrowsTheTasksException) {
    auto boom = []() -> fiber::Task<int> {
        co_await fiber::yield_now();
        throw std::out_of_range("boom");
    };
    try {
        fiber::block_on(boom());
        FAIL() << "expected an exception";
    } catch (const std::out_of_range& e) {
        EXPECT_STREQ(e.what(), "boom");
    }
}

TEST(BlockOn, InsideATaskThrowsAtOnceInsteadOfDeadlocking) {
    // The inner task waits at a gate that another task of the outer
    // executor opens. While block_on blocks the outer task's thread, that
    // task may never run: with one thread, a deadlock. So block_on inside
    // a task refuses at once, as Tokio's does.
    Gate gate;
    std::string error;
    auto outer = [](Gate& gate, std::string& error) -> fiber::Task<> {
        try {
            (void)fiber::block_on(pass(gate));
        } catch (const std::logic_error& e) {
            error = e.what();
        }
        co_return;
    };
    auto opener = [](Gate& gate) -> fiber::Task<> {
        gate.open_it();
        co_return;
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    spawner.spawn(outer(gate, error));
    spawner.spawn(opener(gate));
    executor.run();
    EXPECT_NE(error.find("inside a task"), std::string::npos) << error;
}

TEST(BlockOn, TaskThatCanNeverBeWokenFailsInsteadOfHanging) {
    auto stuck = []() -> fiber::Task<int> {
        LiveCounter alive;
        co_await Abandon{};  // its waker is dropped: nothing can resume it
        co_return 1;
    };
    EXPECT_THROW(fiber::block_on(stuck()), std::logic_error);
    EXPECT_EQ(LiveCounter::live(), 0);  // the suspended frame was destroyed
}

TEST(BlockOn, MovedFromTaskFailsWithAClearMessage) {
    fiber::Task<int> a = yield_then(1, 0);
    fiber::Task<int> b = std::move(a);
    try {
        fiber::block_on(std::move(a));
        FAIL() << "expected an exception";
    } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find("empty task"), std::string::npos);
    }
    EXPECT_EQ(fiber::block_on(std::move(b)), 1);
}
