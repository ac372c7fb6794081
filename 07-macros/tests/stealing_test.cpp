// Local queues, the LIFO slot and stealing: a task woken by the running
// task runs next; two tasks waking each other cannot starve a third; tasks
// queued on a worker that is stuck are taken by the others; and the shared
// queue option still runs everything.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/cpu_job.hpp"
#include "fiber/executor.hpp"
#include "fiber/yield.hpp"
#include "park.hpp"

using namespace std::chrono_literals;

namespace {

// FIBER_QUEUE=shared runs these tests with the shared queue, where there
// is no LIFO slot.
bool shared_queue_from_env() {
    const char* env = std::getenv("FIBER_QUEUE");
    return env && std::string_view(env) == "shared";
}

// Two tasks that wake each other, over and over, until the third has run.
struct PingPong {
    fiber::Waker slot[2];
    std::atomic<bool> third_ran = false;
    std::atomic<int> rounds = 0;
};

fiber::Task<> player(PingPong& p, int me) {
    constexpr int kGiveUp = 100'000;  // starved: stop, and let the test fail
    while (!p.third_ran.load() && p.rounds.load() < kGiveUp) {
        if (p.slot[1 - me]) std::move(p.slot[1 - me]).wake();  // to the LIFO slot
        co_await Park{&p.slot[me]};
        p.rounds.fetch_add(1);
    }
    if (p.slot[1 - me]) std::move(p.slot[1 - me]).wake();  // let the other one end too
}

fiber::Task<> third(PingPong& p) {
    p.third_ran.store(true);
    co_return;
}

}  // namespace

TEST(Stealing, ATaskWokenByTheRunningTaskRunsNext) {
    if (shared_queue_from_env()) GTEST_SKIP() << "the shared queue has no LIFO slot";
    // One worker. The first task wakes b, then c: c runs next (the LIFO
    // slot), and b, displaced from the slot, waits in the queue.
    std::vector<std::string> log;
    fiber::Waker b_waker, c_waker;
    auto parked = [](std::vector<std::string>& log, fiber::Waker* slot,
                     std::string name) -> fiber::Task<> {
        co_await Park{slot};
        log.push_back(name);
    };
    auto waker = [](fiber::Waker& b, fiber::Waker& c) -> fiber::Task<> {
        std::move(b).wake();
        std::move(c).wake();
        co_return;
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    spawner.spawn(parked(log, &b_waker, "b"));
    spawner.spawn(parked(log, &c_waker, "c"));
    spawner.spawn(waker(b_waker, c_waker));
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"c", "b"}));
}

TEST(Stealing, TwoTasksWakingEachOtherCannotStarveAThird) {
    // One worker, so that nobody else can take the third task. Without a
    // bound on the LIFO slot, the two players would run for ever.
    PingPong p;
    auto [executor, spawner] = fiber::new_executor_and_spawner(1);
    spawner.spawn(player(p, 0));
    spawner.spawn(player(p, 1));
    spawner.spawn(third(p));
    executor.run();
    EXPECT_TRUE(p.third_ran.load());
    EXPECT_LT(p.rounds.load(), 100) << "the third task waited for " << p.rounds.load() << " rounds";
}

TEST(Stealing, TasksQueuedOnAStuckWorkerAreRunByTheOthers) {
    // A task spawns 1,000 tasks from a worker: they go to that worker's
    // queue (past 256, half of it overflows to the injection queue). Then
    // it blocks its thread until all of them have run. Only the other
    // workers can run them: they must steal from the stuck worker's queue.
    constexpr int kTasks = 1'000;
    struct Shared {
        std::mutex mutex;
        std::condition_variable cv;
        int ran = 0;
        std::set<std::thread::id> threads;
    } s;
    auto child = [](Shared& s) -> fiber::Task<> {
        volatile std::uint64_t work = fiber::common::cpu_job(1'000);
        (void)work;
        {
            std::lock_guard lock(s.mutex);
            ++s.ran;
            s.threads.insert(std::this_thread::get_id());
        }
        s.cv.notify_all();
        co_return;
    };
    auto parent = [](Shared& s, fiber::Spawner spawner, auto child, std::thread::id& parent_thread,
                     bool& all_ran) -> fiber::Task<> {
        parent_thread = std::this_thread::get_id();
        for (int i = 0; i < kTasks; ++i) spawner.spawn(child(s));
        std::unique_lock lock(s.mutex);
        // Blocks the worker thread on purpose. The limit only turns a
        // failure into a message instead of a hang.
        all_ran = s.cv.wait_for(lock, 30s, [&] { return s.ran == kTasks; });
        co_return;
    };
    std::thread::id parent_thread;
    bool all_ran = false;
    auto [executor, spawner] =
        fiber::new_executor_and_spawner(fiber::ExecutorOptions{.workers = 4});
    spawner.spawn(parent(s, spawner, child, parent_thread, all_ran));
    executor.run();
    EXPECT_TRUE(all_ran);
    EXPECT_EQ(s.ran, kTasks);
    EXPECT_EQ(s.threads.count(parent_thread), 0u);
    EXPECT_GE(s.threads.size(), 1u);
}

TEST(Stealing, TheSharedQueueOptionRunsEveryTask) {
    // The same yield storm with either design: all tasks end, every yield runs.
    for (bool shared : {false, true}) {
        constexpr int kTasks = 200, kYields = 100;
        std::atomic<int> yields = 0;
        auto task = [](std::atomic<int>& yields) -> fiber::Task<> {
            for (int i = 0; i < kYields; ++i) {
                co_await fiber::yield_now();
                yields.fetch_add(1, std::memory_order_relaxed);
            }
        };
        auto [executor, spawner] =
            fiber::new_executor_and_spawner({.workers = 4, .shared_queue = shared});
        for (int i = 0; i < kTasks; ++i) spawner.spawn(task(yields));
        executor.run();
        EXPECT_EQ(yields.load(), kTasks * kYields) << (shared ? "shared" : "local");
    }
}

TEST(Stealing, WithTheSharedQueueWakesRunOldestFirst) {
    // One worker, the shared queue: no LIFO slot, b is woken first, runs first.
    std::vector<std::string> log;
    fiber::Waker b_waker, c_waker;
    auto parked = [](std::vector<std::string>& log, fiber::Waker* slot,
                     std::string name) -> fiber::Task<> {
        co_await Park{slot};
        log.push_back(name);
    };
    auto waker = [](fiber::Waker& b, fiber::Waker& c) -> fiber::Task<> {
        std::move(b).wake();
        std::move(c).wake();
        co_return;
    };
    auto [executor, spawner] =
        fiber::new_executor_and_spawner({.workers = 1, .shared_queue = true});
    spawner.spawn(parked(log, &b_waker, "b"));
    spawner.spawn(parked(log, &c_waker, "c"));
    spawner.spawn(waker(b_waker, c_waker));
    executor.run();
    EXPECT_EQ(log, (std::vector<std::string>{"b", "c"}));
}
