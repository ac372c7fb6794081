// block_on runs one task on the calling thread and returns its result, on
// a runtime that the thread keeps for the next block_on.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <coroutine>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/fail_alloc.hpp"
#include "common/testing/live_counter.hpp"
#include "fiber/block_on.hpp"
#include "fiber/executor.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/sleep.hpp"
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

// The thread's runtime is reused: what one block_on leaves behind must not
// reach the next one.

TEST(BlockOnReuse, ATaskThatNeverSuspendsAllocatesNothingMore) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "operator new cannot be replaced here (ThreadSanitizer)";
    }
    EXPECT_EQ(fiber::block_on(yield_then(1, 0)), 1);  // the thread's runtime exists from here on
    fiber::Task<int> task = yield_then(2, 0);         // its frame: allocated here
    int value = 0;
    {
        fiber::common::FailAllocations none;  // any allocation in block_on throws
        value = fiber::block_on(std::move(task));
    }
    EXPECT_FALSE(fiber::common::FailAllocations::failed());
    EXPECT_EQ(value, 2);
}

TEST(BlockOnReuse, ManyInARowOnOneThread) {
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(fiber::block_on(yield_then(i, i % 3)), i);  // some finish at once, some suspend
    }
}

TEST(BlockOnReuse, AnExceptionLeavesTheRuntimeUsable) {
    auto boom = [](bool suspend) -> fiber::Task<int> {
        if (suspend) co_await fiber::yield_now();
        throw std::out_of_range("boom");
    };
    for (bool suspend : {false, true}) {
        EXPECT_THROW(fiber::block_on(boom(suspend)), std::out_of_range);
        EXPECT_EQ(fiber::block_on(yield_then(3, 1)), 3);
    }
}

TEST(BlockOnReuse, PendingSpawnedTasksAreDestroyedBeforeItReturns) {
    for (bool suspend : {false, true}) {
        fiber::Waker parked;
        auto root = [](fiber::Waker* slot, bool suspend) -> fiber::Task<int> {
            auto waits = [](fiber::Waker* slot) -> fiber::Task<> {
                LiveCounter alive;
                co_await Park{slot};  // only the test holds its waker
                ADD_FAILURE() << "resumed after its block_on returned";
            };
            auto queued = []() -> fiber::Task<> {
                LiveCounter alive;
                co_return;
            };
            fiber::spawn(waits(slot)).detach();
            if (suspend) co_await fiber::yield_now();  // waits() runs and parks
            fiber::spawn(queued()).detach();           // never runs
            co_return 7;
        };
        EXPECT_EQ(fiber::block_on(root(&parked, suspend)), 7);
        EXPECT_EQ(LiveCounter::live(), 0);  // both destructors ran before block_on returned
        EXPECT_EQ(static_cast<bool>(parked), suspend);
        // A Waker of a task of the earlier block_on: waking it now does
        // nothing, here and from inside the next block_on.
        auto wake_old = [](fiber::Waker old) -> fiber::Task<int> {
            if (old) std::move(old).wake();
            co_await fiber::yield_now();
            co_return 8;
        };
        EXPECT_EQ(fiber::block_on(wake_old(std::move(parked))), 8);
        EXPECT_EQ(LiveCounter::live(), 0);
    }
}

TEST(BlockOnReuse, AWakerOfAnEarlierBlockOnWokenOnAnotherThread) {
    fiber::Waker parked;
    auto root = [](fiber::Waker* slot) -> fiber::Task<> {
        auto waits = [](fiber::Waker* slot) -> fiber::Task<> {
            LiveCounter alive;
            co_await Park{slot};
            ADD_FAILURE() << "resumed after its block_on returned";
        };
        fiber::spawn(waits(slot)).detach();
        co_await fiber::yield_now();
    };
    fiber::block_on(root(&parked));
    ASSERT_TRUE(parked);
    std::thread late([w = std::move(parked)]() mutable { std::move(w).wake(); });
    EXPECT_EQ(fiber::block_on(yield_then(9, 2)), 9);  // meanwhile, on the next runtime
    late.join();
    EXPECT_EQ(LiveCounter::live(), 0);
}

TEST(BlockOnReuse, SleepsInConsecutiveBlockOns) {
    using namespace std::chrono_literals;
    auto nap = []() -> fiber::Task<int> {
        co_await fiber::sleep_for(1ms);
        co_return 1;
    };
    for (int i = 0; i < 3; ++i) EXPECT_EQ(fiber::block_on(nap()), 1);
}

TEST(BlockOnReuse, RefusedInsideBlockOnsOwnTaskLeavesTheRuntimeUsable) {
    // block_on inside the task of a block_on: the thread's runtime is busy
    // running the outer task. The inner call throws and changes nothing.
    auto outer = []() -> fiber::Task<int> {
        int refused = 0;
        try {
            (void)fiber::block_on(yield_then(1, 1));
        } catch (const std::logic_error&) {
            ++refused;
        }
        co_await fiber::yield_now();
        co_return refused;
    };
    EXPECT_EQ(fiber::block_on(outer()), 1);
    EXPECT_EQ(fiber::block_on(outer()), 1);
    EXPECT_EQ(fiber::block_on(yield_then(5, 1)), 5);
}

TEST(BlockOnReuse, OneRuntimePerThread) {
    std::vector<std::thread> threads;
    std::atomic<int> sum = 0;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&sum, t] {
            for (int i = 0; i < 200; ++i) sum += fiber::block_on(yield_then(t, i % 2));
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(sum.load(), 200 * (0 + 1 + 2 + 3));
}

// The thread's runtime goes with the thread: a thread that ran block_on
// and exits leaves no scheduler behind.
TEST(BlockOnReuse, AThreadsRuntimeIsFreedWhenTheThreadExits) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "operator new cannot be replaced here";
    }
    EXPECT_EQ(fiber::block_on(yield_then(1, 1)), 1);  // this thread's runtime exists already
    const auto before = fiber::common::live_allocations();
    std::thread other([] { EXPECT_EQ(fiber::block_on(yield_then(2, 1)), 2); });
    other.join();
    EXPECT_EQ(fiber::common::live_allocations(), before);
}

// The same, whatever the thread's other thread_local destructors do first.
// With mingw-w64 the storage of every thread_local variable is freed before
// their destructors run, so the memory that held the thread's runtime may
// be handed out and overwritten by then; this destructor does just that.
TEST(BlockOnReuse, AThreadsRuntimeIsClosedAfterItsThreadLocalStorageIsReused) {
    struct Scribble {
        ~Scribble() {
            void* blocks[256];
            for (std::size_t i = 0; i < std::size(blocks); ++i) {
                const std::size_t size = 8 + 8 * (i % 8);
                blocks[i] = std::malloc(size);
                if (blocks[i]) std::memset(blocks[i], 0xff, size);
            }
            for (void* block : blocks) std::free(block);
        }
    };
    std::thread other([] {
        EXPECT_EQ(fiber::block_on(yield_then(2, 1)), 2);  // the thread's runtime first,
        thread_local Scribble scribble;                   // so this is destroyed before it
        (void)scribble;
    });
    other.join();
    EXPECT_EQ(fiber::block_on(yield_then(3, 1)), 3);
}
