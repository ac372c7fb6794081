// Task<> is lazy and move-only, runs once, and misuse fails loudly.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>

#include "fiber/executor.hpp"

static_assert(!std::is_copy_constructible_v<fiber::Task<>>);
static_assert(std::is_nothrow_move_constructible_v<fiber::Task<>>);

namespace {

fiber::Task<> count_up(int& n) {
    ++n;
    co_return;
}

}  // namespace

TEST(Task, IsLazyUntilAwaitedOrSpawned) {
    int n = 0;
    {
        fiber::Task<> task = count_up(n);
        EXPECT_EQ(n, 0);
    }  // destroyed without ever running
    EXPECT_EQ(n, 0);
}

TEST(Task, AwaitingAMovedFromTaskFailsWithAClearMessage) {
    int n = 0;
    auto misuse = [](int& n) -> fiber::Task<> {
        fiber::Task<> a = count_up(n);
        fiber::Task<> b = std::move(a);
        co_await std::move(b);
        co_await std::move(a);  // a is empty: this must not run anything
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    spawner.spawn(misuse(n));
    // Chapter 1 has nowhere to deliver an exception but out of run().
    try {
        executor.run();
        FAIL() << "awaiting an empty task must throw";
    } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find("empty task"), std::string::npos) << e.what();
    }
    EXPECT_EQ(n, 1);
}

TEST(Task, AwaitingTheSameTaskTwiceFails) {
    int n = 0;
    auto twice = [](int& n) -> fiber::Task<> {
        fiber::Task<> a = count_up(n);
        co_await std::move(a);
        co_await std::move(a);  // a task runs once
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    spawner.spawn(twice(n));
    EXPECT_THROW(executor.run(), std::logic_error);
    EXPECT_EQ(n, 1);
}
