// A Waker resumes its coroutine exactly once: it cannot be copied, and
// waking consumes it.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "common/testing/fail_alloc.hpp"
#include "fiber/executor.hpp"
#include "park.hpp"

static_assert(!std::is_copy_constructible_v<fiber::Waker>);
static_assert(!std::is_copy_assignable_v<fiber::Waker>);
static_assert(std::is_nothrow_move_constructible_v<fiber::Waker>);

namespace {

fiber::Task<> sleeper(fiber::Waker* slot, std::vector<std::string>& log) {
    log.push_back("sleeper parks");
    co_await Park{slot};
    log.push_back("sleeper resumed");
}

fiber::Task<> waker_task(fiber::Waker* slot, std::vector<std::string>& log) {
    log.push_back("waking");
    std::move(*slot).wake();
    EXPECT_FALSE(*slot);  // consumed
    log.push_back("woken");
    co_return;
}

}  // namespace

TEST(Waker, AnotherTaskWakesAParkedTaskOnce) {
    std::vector<std::string> log;
    fiber::Waker slot;
    // One worker: the parked task must park before the next task runs.
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    spawner.spawn(sleeper(&slot, log));
    spawner.spawn(waker_task(&slot, log));
    executor.run();
    EXPECT_EQ(log,
              (std::vector<std::string>{"sleeper parks", "waking", "woken", "sleeper resumed"}));
}

TEST(Waker, DroppedWakerLeavesTheTaskSuspendedAndRunReturns) {
    std::vector<std::string> log;
    fiber::Waker slot;
    auto dropper = [](fiber::Waker* slot) -> fiber::Task<> {
        *slot = fiber::Waker();  // drops the sleeper's waker without waking it
        co_return;
    };
    // One worker: the parked task must park before the next task runs.
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    spawner.spawn(sleeper(&slot, log));
    spawner.spawn(dropper(&slot));
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"sleeper parks"}));
    EXPECT_FALSE(slot);
}

TEST(Waker, WakingAnEmptyWakerThrows) {
    fiber::Waker empty;
    EXPECT_FALSE(empty);
    EXPECT_THROW(std::move(empty).wake(), std::logic_error);
}

TEST(Waker, MovingTransfersTheRightToWake) {
    std::vector<std::string> log;
    fiber::Waker slot;
    auto mover = [](fiber::Waker* slot) -> fiber::Task<> {
        fiber::Waker moved = std::move(*slot);
        EXPECT_FALSE(*slot);
        EXPECT_TRUE(moved);
        std::move(moved).wake();
        co_return;
    };
    // One worker: the parked task must park before the next task runs.
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    spawner.spawn(sleeper(&slot, log));
    spawner.spawn(mover(&slot));
    executor.run();
    EXPECT_EQ(log.back(), "sleeper resumed");
}

TEST(Waker, CurrentWakerOutsideAnExecutorThrows) {
    EXPECT_THROW(fiber::current_waker(std::noop_coroutine()), std::logic_error);
}

TEST(Waker, AWakeNeverAllocatesSoItCannotRunOutOfMemory) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "operator new cannot be replaced here (ThreadSanitizer)";
    }
    // The ready queue links the tasks themselves (chapter 5's allocated a
    // block now and then): with every allocation failing, every wake works.
    constexpr int kTasks = 300;
    std::vector<fiber::Waker> slots(kTasks);
    int resumed = 0;
    auto parked = [](fiber::Waker* slot, int& resumed) -> fiber::Task<> {
        co_await Park{slot};
        ++resumed;
    };
    auto waker = [](std::vector<fiber::Waker>& slots) -> fiber::Task<> {
        for (fiber::Waker& w : slots) {
            fiber::common::FailAllocations no_memory;
            std::move(w).wake();
            EXPECT_FALSE(fiber::common::FailAllocations::failed());
        }
        co_return;
    };
    // One worker: the waker runs once every task has parked (spawn order).
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    for (auto& slot : slots) spawner.spawn(parked(&slot, resumed));
    spawner.spawn(waker(slots));
    executor.run();
    EXPECT_EQ(resumed, kTasks);
}
