// Task<T> delivers values of every kind, and exceptions, to the awaiter.
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/testing/live_counter.hpp"
#include "fiber/block_on.hpp"

using fiber::common::LiveCounter;

namespace {

fiber::Task<int> answer() { co_return 42; }

fiber::Task<std::string> greet(std::string name) { co_return "hello " + name; }

fiber::Task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

fiber::Task<int&> pick(std::vector<int>& values, std::size_t i) { co_return values[i]; }

fiber::Task<int> fails(std::string why) {
    throw std::runtime_error(why);
    co_return 0;
}

fiber::Task<> void_fails() {
    throw std::invalid_argument("void task failed");
    co_return;
}

}  // namespace

TEST(ReturnValue, ValueReachesTheAwaiter) {
    auto sum = []() -> fiber::Task<int> {
        int a = co_await answer();
        int b = co_await answer();
        co_return a + b;
    };
    EXPECT_EQ(fiber::block_on(sum()), 84);
}

TEST(ReturnValue, StringsAndArgumentsCopiedIntoTheFrame) {
    std::string name = "fiber";
    auto task = greet(name);
    name = "changed";  // the frame holds its own copy of the argument
    EXPECT_EQ(fiber::block_on(std::move(task)), "hello fiber");
}

TEST(ReturnValue, MoveOnlyValues) {
    std::unique_ptr<int> p = fiber::block_on(boxed(7));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 7);
}

TEST(ReturnValue, ReferencesReferToTheOriginal) {
    std::vector<int> values{1, 2, 3};
    auto bump = [](std::vector<int>& values) -> fiber::Task<> {
        int& middle = co_await pick(values, 1);
        middle = 20;
    };
    fiber::block_on(bump(values));
    EXPECT_EQ(values[1], 20);
}

TEST(ReturnValue, ExceptionRethrownAtTheParentsAwait) {
    auto parent = []() -> fiber::Task<std::string> {
        try {
            co_await fails("child failed");
        } catch (const std::runtime_error& e) {
            co_return std::string("caught: ") + e.what();
        }
        co_return "not caught";
    };
    EXPECT_EQ(fiber::block_on(parent()), "caught: child failed");
}

TEST(ReturnValue, ExceptionPassesThroughSeveralLevels) {
    auto middle = []() -> fiber::Task<int> { co_return co_await fails("deep") + 1; };
    auto top = [&]() -> fiber::Task<int> { co_return co_await middle(); };
    EXPECT_THROW(fiber::block_on(top()), std::runtime_error);
}

TEST(ReturnValue, FramesAreDestroyedAfterAnException) {
    auto child = []() -> fiber::Task<int> {
        LiveCounter alive;
        throw std::runtime_error("x");
        co_return 1;
    };
    auto parent = [&]() -> fiber::Task<int> {
        LiveCounter alive;
        co_return co_await child();
    };
    EXPECT_THROW(fiber::block_on(parent()), std::runtime_error);
    EXPECT_EQ(LiveCounter::live(), 0);
}

TEST(ReturnValue, SpawnedTaskFailureIsReportedAndOthersStillRun) {
    int ran = 0;
    auto ok = [](int& ran) -> fiber::Task<> {
        ++ran;
        co_return;
    };
    testing::internal::CaptureStderr();
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(void_fails());
        spawner.spawn(ok(ran));
        executor.run();
    }
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(ran, 1);
    EXPECT_NE(err.find("void task failed"), std::string::npos) << err;
}
