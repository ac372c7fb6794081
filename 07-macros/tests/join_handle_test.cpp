// spawn() and JoinHandle: the value, the exception, abort, detach; awaiting
// a handle is itself cancellable, and safe when the handle goes meanwhile;
// spawn outside a runtime, or of an empty task, fails loudly.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/testing/fail_alloc.hpp"
#include "common/testing/live_counter.hpp"
#include "fiber/block_on.hpp"
#include "fiber/cancel.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/sleep.hpp"
#include "fiber/yield.hpp"
#include "tcp_helpers.hpp"
#include "watchdog.hpp"

using namespace std::chrono_literals;
using fiber::Cancelled;
using fiber::JoinHandle;
using fiber::Task;
using fiber::common::LiveCounter;

namespace {

Task<int> forty_two() { co_return 42; }

Task<int> fails() {
    co_await fiber::yield_now();
    throw std::runtime_error("boom");
}

Task<int> sleeps_forever() {
    co_await fiber::sleep_for(1h);
    co_return 1;
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

// The task is destroyed with its executor before anyone awaits it: the
// await ends with Cancelled at once (Tokio: JoinError::Cancelled), and the
// handle says the task is finished.
TEST(JoinHandle, AwaitingATaskDestroyedAtShutdownThrowsCancelled) {
    Watchdog watchdog;
    std::optional<JoinHandle<int>> handle;
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner(1);
        spawner.spawn([](std::optional<JoinHandle<int>>& handle, fiber::Executor& ex) -> Task<> {
            handle = fiber::spawn(sleeps_forever());
            ex.stop();
            co_return;
        }(handle, executor));
        executor.run();
    }  // the executor goes, and the sleeping task with it
    ASSERT_TRUE(handle);
    EXPECT_TRUE(handle->is_finished());
    fiber::block_on(
        [](JoinHandle<int>& h) -> Task<> { EXPECT_THROW((void)co_await h, Cancelled); }(*handle));
}

// The same while a task of another runtime waits in the await: the
// destruction wakes it, with Cancelled.
TEST(JoinHandle, AnAwaitUnderWayEndsWhenTheTaskIsDestroyedAtShutdown) {
    Watchdog watchdog;
    std::mutex mutex;
    std::condition_variable published;
    std::optional<JoinHandle<int>> handle;  // under `mutex` until published
    Countdown go(1);                        // the awaiter waits: runtime A may stop
    std::thread runtime_a([&] {
        auto [executor, spawner] = fiber::new_executor_and_spawner(1);
        spawner.spawn([](std::mutex& m, std::condition_variable& published,
                         std::optional<JoinHandle<int>>& handle, Countdown& go,
                         fiber::Executor& ex) -> Task<> {
            {
                std::lock_guard lock(m);
                handle = fiber::spawn(sleeps_forever());
            }
            published.notify_one();
            co_await go.wait();
            ex.stop();
        }(mutex, published, handle, go, executor));
        executor.run();
    });  // the thread's end destroys executor A, and the sleeping task
    {
        std::unique_lock lock(mutex);
        published.wait(lock, [&] { return handle.has_value(); });
    }
    // One worker: the helper runs once the await below has suspended.
    fiber::block_on([](JoinHandle<int>& h, Countdown& go) -> Task<> {
        fiber::spawn([](Countdown& go) -> Task<> {
            go.done();
            co_return;
        }(go))
            .detach();
        EXPECT_THROW((void)co_await h, Cancelled);
        EXPECT_TRUE(h.is_finished());
    }(*handle, go));
    runtime_a.join();
}

// Two tasks await one handle at the same moment, on two workers when there
// are several. The check for a second awaiter and the publication of the
// first one's Waker are one atomic step: exactly one await waits (and gets
// the value), the other throws std::logic_error, every time. Were they two
// steps, both could pass the check, and one Waker would be overwritten:
// its task would never wake (the watchdog ends that).
TEST(JoinHandle, TwoAwaitersAtOnceOneWaitsTheOtherThrows) {
    Watchdog watchdog;
    run_test([](fiber::Spawner) -> Task<> {
        // The window is a few instructions wide: many rounds to meet it.
        for (int i = 0; i < 10000; ++i) {
            Countdown go(1);
            auto target = fiber::spawn([](Countdown& go) -> Task<int> {
                co_await go.wait();
                co_return 7;
            }(go));
            std::atomic<int> arrived = 0;
            std::atomic<int> values = 0;
            std::atomic<int> refused = 0;
            auto awaiter = [](JoinHandle<int>& h, std::atomic<int>& arrived,
                              std::atomic<int>& values, std::atomic<int>& refused) -> Task<> {
                // Both at the await together: spin a little (two workers
                // meet), then yield (one worker runs the other awaiter).
                ++arrived;
                for (int spins = 0; arrived.load() < 2; ++spins) {
                    if (spins > 1000) co_await fiber::yield_now();
                }
                try {
                    if (co_await h == 7) ++values;
                } catch (const std::logic_error&) {
                    ++refused;
                }
            };
            auto a = fiber::spawn(awaiter(target, arrived, values, refused));
            auto b = fiber::spawn(awaiter(target, arrived, values, refused));
            // One of them refused; the other waits (or will): let it have the value.
            while (refused.load() == 0) co_await fiber::yield_now();
            go.done();
            co_await a;
            co_await b;
            EXPECT_EQ(values.load(), 1);
            EXPECT_EQ(refused.load(), 1);
        }
    });
}

// spawn under failing allocation: std::bad_alloc reaches the caller, from
// spawn() or from the await, and no frame is left behind.
TEST(JoinHandle, SpawnRunningOutOfMemoryThrowsBadAllocAndLeaksNothing) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "operator new cannot be replaced here (ThreadSanitizer)";
    }
    // One worker: the spawned task runs on this thread, where allocations fail.
    run_on_one_worker([](fiber::Spawner) -> Task<> {
        auto counted = []() -> Task<int> {
            LiveCounter alive;
            co_await fiber::yield_now();
            co_return 5;
        };
        bool succeeded = false;
        for (std::size_t n = 0; n < 1000 && !succeeded; ++n) {
            const long before = LiveCounter::live();
            int value = 0;
            bool bad_alloc = false;
            try {
                fiber::common::FailAllocations fail(n);
                value = co_await fiber::spawn(counted());
                succeeded = !fiber::common::FailAllocations::failed();
            } catch (const std::bad_alloc&) {
                bad_alloc = true;
            }
            EXPECT_TRUE(bad_alloc || value == 5) << n;
            EXPECT_EQ(LiveCounter::live(), before) << n;
        }
        EXPECT_TRUE(succeeded);
    });
}
