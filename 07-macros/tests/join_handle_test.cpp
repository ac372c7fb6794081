// spawn() and JoinHandle: the value, the exception, abort, detach; awaiting
// a handle is itself cancellable, and safe when the handle goes meanwhile;
// spawn outside a runtime, or of an empty task, fails loudly.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "fiber/cancel.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/sleep.hpp"
#include "fiber/yield.hpp"
#include "tcp_helpers.hpp"

using namespace std::chrono_literals;
using fiber::Cancelled;
using fiber::Task;

namespace {

Task<int> forty_two() { co_return 42; }

Task<int> fails() {
    co_await fiber::yield_now();
    throw std::runtime_error("boom");
}

}  // namespace

TEST(JoinHandle, AwaitGivesTheValue) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn(forty_two());
        EXPECT_EQ(co_await handle, 42);
    });
}

TEST(JoinHandle, AwaitGivesAMoveOnlyValue) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn([]() -> Task<std::unique_ptr<std::string>> {
            co_return std::make_unique<std::string>("moved");
        }());
        auto value = co_await std::move(handle);
        EXPECT_EQ(*value, "moved");
    });
}

TEST(JoinHandle, AwaitRethrowsTheException) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn(fails());
        try {
            (void)co_await handle;
            ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "boom");
        }
    });
}

TEST(JoinHandle, AwaitAfterTheTaskFinished) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn(forty_two());
        while (!handle.is_finished()) co_await fiber::yield_now();
        handle.abort();  // finished: does nothing
        EXPECT_EQ(co_await handle, 42);
    });
}

TEST(JoinHandle, AResultIsTakenOnce) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn(forty_two());
        EXPECT_EQ(co_await handle, 42);
        EXPECT_THROW((void)co_await handle, std::logic_error);
    });
}

TEST(JoinHandle, DestroyingTheHandleDetachesTheTask) {
    run_test([](fiber::Spawner) -> Task<> {
        Countdown finished(1);
        std::atomic<bool> go = false;
        {
            auto handle = fiber::spawn([](std::atomic<bool>& go, Countdown& finished) -> Task<> {
                while (!go.load()) co_await fiber::yield_now();
                finished.done();
            }(go, finished));
        }  // detached: it runs on
        go = true;
        co_await finished.wait();
    });
}

TEST(JoinHandle, ADetachedTaskThatFailsIsReported) {
    testing::internal::CaptureStderr();
    // One worker: the failing task runs on to its end, where the last
    // reference goes and the report is printed, before the waiter runs.
    run_on_one_worker([](fiber::Spawner) -> Task<> {
        Countdown finished(1);
        fiber::spawn([](Countdown& finished) -> Task<> {
            struct Done {
                Countdown& c;
                ~Done() { c.done(); }
            } done{finished};
            throw std::runtime_error("lost?");
            co_return;
        }(finished))
            .detach();
        co_await finished.wait();
    });
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("fiber: a spawned task failed: lost?"), std::string::npos) << err;
}

TEST(JoinHandle, AwaitingAnAbortedTaskThrowsCancelled) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn([]() -> Task<int> {
            co_await fiber::sleep_for(1h);
            co_return 1;
        }());
        handle.abort();
        EXPECT_THROW(co_await handle, Cancelled);
    });
}

TEST(JoinHandle, AwaitingAHandleEndsWhenTheAwaiterIsAborted) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<bool> started = false;
        auto sleeper = fiber::spawn([]() -> Task<int> {
            co_await fiber::sleep_for(1h);
            co_return 1;
        }());
        auto waiter = fiber::spawn([](fiber::JoinHandle<int>& h, std::atomic<bool>& s) -> Task<> {
            s = true;
            (void)co_await h;
        }(sleeper, started));
        while (!started.load()) co_await fiber::yield_now();
        waiter.abort();
        EXPECT_THROW(co_await waiter, Cancelled);
        EXPECT_FALSE(sleeper.is_finished());  // the awaited task runs on
        sleeper.abort();
        EXPECT_THROW(co_await sleeper, Cancelled);
    });
}

TEST(JoinHandle, SpawnOutsideARuntimeThrows) {
    EXPECT_THROW((void)fiber::spawn(forty_two()), std::logic_error);
}

TEST(JoinHandle, ManySpawnedTasksOnSeveralWorkers) {
    run_test([](fiber::Spawner) -> Task<> {
        std::vector<fiber::JoinHandle<int>> handles;
        for (int i = 0; i < 1000; ++i) {
            handles.push_back(fiber::spawn([](int i) -> Task<int> {
                co_await fiber::yield_now();
                co_return i;
            }(i)));
        }
        long sum = 0;
        for (auto& h : handles) sum += co_await h;
        EXPECT_EQ(sum, 999L * 1000 / 2);
    });
}

TEST(JoinHandle, TheHandleMayGoWhileItIsAwaited) {
    // One worker: after the yield, the waiter waits in its await.
    run_on_one_worker([](fiber::Spawner) -> Task<> {
        Countdown go(1);
        std::optional<fiber::JoinHandle<int>> handle = fiber::spawn([](Countdown& go) -> Task<int> {
            co_await go.wait();
            co_return 5;
        }(go));
        auto waiter = fiber::spawn([](std::optional<fiber::JoinHandle<int>>& h) -> Task<int> {
            co_return co_await *h;
        }(handle));
        co_await fiber::yield_now();
        handle.reset();  // the await holds the task's result alive on its own
        go.done();
        EXPECT_EQ(co_await waiter, 5);
    });
}

TEST(JoinHandle, AwaitingAnRvalueHandleTakesIt) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn(forty_two());
        EXPECT_EQ(co_await std::move(handle), 42);
        EXPECT_THROW((void)handle.is_finished(), std::logic_error);  // moved from
        EXPECT_EQ(co_await fiber::spawn(forty_two()), 42);           // a temporary
    });
}

TEST(JoinHandle, SpawningAnEmptyTaskThrows) {
    run_test([](fiber::Spawner) -> Task<> {
        Task<int> task = forty_two();
        Task<int> moved = std::move(task);
        EXPECT_THROW((void)fiber::spawn(std::move(task)), std::logic_error);
        EXPECT_EQ(co_await fiber::spawn(std::move(moved)), 42);
    });
}
