// The executor runs spawned tasks in order, interleaves them at each
// yield, and destroys every frame: finished, suspended, or never started.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/testing/live_counter.hpp"
#include "fiber/executor.hpp"
#include "fiber/yield.hpp"
#include "park.hpp"

using fiber::common::LiveCounter;

namespace {

fiber::Task<> record(std::vector<std::string>& log, std::string name) {
    log.push_back(name);
    co_return;
}

fiber::Task<> parent(std::vector<std::string>& log) {
    log.push_back("parent starts");
    co_await record(log, "child");
    log.push_back("parent ends");
}

fiber::Task<> yielder(std::vector<std::string>& log, std::string name, int times) {
    for (int i = 0; i < times; ++i) {
        log.push_back(name + std::to_string(i));
        co_await fiber::yield_now();
    }
}

fiber::Task<> counted_child() {
    LiveCounter alive;
    co_return;
}

fiber::Task<> counted() {
    LiveCounter alive;
    co_await counted_child();
}

fiber::Task<> counted_abandoned() {
    LiveCounter alive;
    co_await counted_child();
    co_await Abandon{};
}

}  // namespace

TEST(Executor, SpawnedTasksRunInSpawnOrderOnOneWorker) {
    std::vector<std::string> log;
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    spawner.spawn(record(log, "a"));
    spawner.spawn(record(log, "b"));
    spawner.spawn(record(log, "c"));
    EXPECT_TRUE(log.empty());  // lazy: nothing runs before run()
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(Executor, ChildFinishesBeforeParentContinues) {
    std::vector<std::string> log;
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    spawner.spawn(parent(log));
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"parent starts", "child", "parent ends"}));
}

TEST(Executor, YieldInterleavesTwoTasks) {
    std::vector<std::string> log;
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);  // interleaving: one worker
    spawner.spawn(yielder(log, "a", 3));
    spawner.spawn(yielder(log, "b", 3));
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"a0", "b0", "a1", "b1", "a2", "b2"}));
}

TEST(Executor, TaskSpawnedFromATaskRuns) {
    std::vector<std::string> log;
    // One worker: on several, the child may run while its parent still
    // writes to the same log.
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    auto outer = [](fiber::Spawner s, std::vector<std::string>& log) -> fiber::Task<> {
        s.spawn(record(log, "inner"));
        log.push_back("outer");
        co_return;
    };
    spawner.spawn(outer(spawner, log));
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"outer", "inner"}));
}

TEST(Executor, FinishedTasksFramesAreDestroyed) {
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (int i = 0; i < 10; ++i) spawner.spawn(counted());
        executor.run();
        EXPECT_EQ(LiveCounter::live(), 0);
    }
    EXPECT_EQ(LiveCounter::live(), 0);
}

TEST(Executor, DestroyingExecutorDestroysTasksThatNeverRan) {
    int ran = 0;
    auto body = [](int& ran) -> fiber::Task<> {
        LiveCounter alive;
        ++ran;
        co_return;
    };
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (int i = 0; i < 5; ++i) spawner.spawn(body(ran));
        // Not run. The frames exist (lazy tasks hold their arguments)...
    }
    // ...and the executor destroyed them without running them.
    EXPECT_EQ(ran, 0);
    EXPECT_EQ(LiveCounter::live(), 0);
}

TEST(Executor, DestroyingExecutorDestroysSuspendedTasksAndTheirChildren) {
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        auto holder = []() -> fiber::Task<> {
            LiveCounter alive;
            co_await counted_abandoned();  // parks, and nothing can wake it
        };
        spawner.spawn(holder());
        executor.run();                     // returns: nothing is ready, nothing can become ready
        EXPECT_EQ(LiveCounter::live(), 2);  // holder and its suspended child
    }
    EXPECT_EQ(LiveCounter::live(), 0);
}

TEST(Executor, SpawnAfterExecutorIsDestroyedThrows) {
    auto pair = fiber::new_executor_and_spawner();
    fiber::Spawner spawner = pair.second;
    { fiber::Executor gone = std::move(pair.first); }
    std::vector<std::string> log;
    try {
        spawner.spawn(record(log, "never"));
        FAIL() << "spawn on a destroyed executor must throw";
    } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find("executor has been destroyed"), std::string::npos);
    }
    EXPECT_TRUE(log.empty());
}

TEST(Executor, MoveAssignmentDestroysTheTasksOfTheExecutorItReplaces) {
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    auto holder = []() -> fiber::Task<> {
        LiveCounter alive;
        co_await Abandon{};
    };
    spawner.spawn(holder());
    executor.run();
    EXPECT_EQ(LiveCounter::live(), 1);
    // The Spawner keeps the old state alive, but the executor that owned the
    // task is replaced: its tasks go, exactly as if it had been destroyed.
    executor = fiber::new_executor_and_spawner().first;
    EXPECT_EQ(LiveCounter::live(), 0);
    EXPECT_THROW(spawner.spawn(holder()), std::logic_error);
}

TEST(Executor, AMovedFromExecutorOrSpawnerFailsLoudly) {
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    fiber::Executor moved_executor = std::move(executor);
    fiber::Spawner moved_spawner = std::move(spawner);
    EXPECT_THROW(executor.run(), std::logic_error);
    std::vector<std::string> log;
    EXPECT_THROW(spawner.spawn(record(log, "never")), std::logic_error);
    EXPECT_TRUE(log.empty());
}
