// block_on runs one task on the calling thread and returns its result.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/testing/live_counter.hpp"
#include "fiber/block_on.hpp"
#include "fiber/yield.hpp"
#include "park.hpp"

using fiber::common::LiveCounter;

namespace {

fiber::Task<int> yield_then(int v, int times) {
    for (int i = 0; i < times; ++i) co_await fiber::yield_now();
    co_return v;
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

TEST(BlockOn, NestedBlockOnInsideATask) {
    auto outer = []() -> fiber::Task<int> {
        int inner = fiber::block_on(yield_then(1, 2));  // its own executor
        co_await fiber::yield_now();                    // back on ours
        co_return inner + 1;
    };
    EXPECT_EQ(fiber::block_on(outer()), 2);
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
