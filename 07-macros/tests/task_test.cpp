// Task<> is lazy and move-only, runs once, and misuse fails loudly.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>

#include "fiber/block_on.hpp"
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
    auto misuse = [](int& n) -> fiber::Task<std::string> {
        fiber::Task<> a = count_up(n);
        fiber::Task<> b = std::move(a);
        co_await std::move(b);
        try {
            co_await std::move(a);  // a is empty: this must not run anything
        } catch (const std::logic_error& e) {
            co_return e.what();  // delivered to the awaiting task
        }
        co_return "no error";
    };
    std::string message = fiber::block_on(misuse(n));
    EXPECT_NE(message.find("empty task"), std::string::npos) << message;
    EXPECT_EQ(n, 1);
}

TEST(Task, AwaitingTheSameTaskTwiceFails) {
    int n = 0;
    auto twice = [](int& n) -> fiber::Task<> {
        fiber::Task<> a = count_up(n);
        co_await std::move(a);
        co_await std::move(a);  // a task runs once
    };
    EXPECT_THROW(fiber::block_on(twice(n)), std::logic_error);
    EXPECT_EQ(n, 1);
}
