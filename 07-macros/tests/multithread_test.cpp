// Many workers: no lost wake-up under a storm of cross-thread wakes, never
// one task on two workers at once, stop() seen by every worker, a clean
// shutdown whatever the tasks are doing, and idle workers that really sleep.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/cpu_job.hpp"
#include "common/cpu_time.hpp"
#include "common/testing/live_counter.hpp"
#include "common/testing/wine.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"
#include "fiber/yield.hpp"
#include "park.hpp"

using namespace std::chrono_literals;
using fiber::common::LiveCounter;

namespace {

// Sanitizers run the storm ten times slower: a smaller one there.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Threads that are not workers and wake whatever Wakers they are handed,
// as a reactor or a timer thread would, racing the workers as they park.
class WakerThreads {
public:
    explicit WakerThreads(int n) {
        for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
    }
    ~WakerThreads() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    void push(fiber::Waker w) {
        {
            std::lock_guard lock(mutex_);
            wakers_.push_back(std::move(w));
        }
        cv_.notify_one();
    }

private:
    void loop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            cv_.wait(lock, [this] { return done_ || !wakers_.empty(); });
            if (wakers_.empty()) return;
            fiber::Waker w = std::move(wakers_.front());
            wakers_.pop_front();
            lock.unlock();
            std::move(w).wake();  // w may be the last thing holding its executor
            lock.lock();
        }
    }
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<fiber::Waker> wakers_;
    bool done_ = false;
    std::vector<std::thread> threads_;
};

// Suspends and hands its Waker to a waker thread.
struct HandOff {
    WakerThreads* to;
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) { to->push(fiber::current_waker(self)); }
    void await_resume() noexcept {}
};

}  // namespace

TEST(Multithread, AMillionCrossThreadWakesWhileWorkersParkAndUnpark) {
    // A lost wake-up leaves a task asleep and run() waiting for ever: the
    // test then fails on CTest's time limit. Few tasks for many workers, so
    // the workers keep running out of work, spinning and parking.
    // Under wine each park and unpark is a wineserver round trip: 100 s
    // for a million; a tenth of it there (common/testing/wine.hpp).
    const long kWakes = kSanitized                            ? 200'000
                        : fiber::common::running_under_wine() ? 100'000
                                                              : 1'000'000;
    constexpr int kTasks = 8;
    std::atomic<long> wakes = 0;
    WakerThreads threads(2);
    auto task = [](WakerThreads& threads, long rounds, std::atomic<long>& wakes) -> fiber::Task<> {
        for (long i = 0; i < rounds; ++i) {
            co_await HandOff{&threads};
            wakes.fetch_add(1, std::memory_order_relaxed);
        }
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    for (int i = 0; i < kTasks; ++i) spawner.spawn(task(threads, kWakes / kTasks, wakes));
    executor.run();
    EXPECT_EQ(wakes.load(), kWakes);
}

TEST(Multithread, ATaskNeverRunsOnTwoWorkersAtOnce) {
    // Each task marks itself running while it runs; it is woken by itself
    // (yield: a wake while still running), by waker threads and by other
    // tasks. A second worker resuming it meanwhile finds the mark.
    constexpr int kTasks = 64;
    constexpr int kRounds = 2'000;
    struct Shared {
        std::atomic<int> races = 0;
        WakerThreads threads{2};
        std::mutex mutex;
        std::vector<fiber::Waker> parked;  // tasks waiting for another task to wake them
        int awake = kTasks;                // tasks neither parked nor finished
    } shared;
    // Parks the task (its Waker into `parked`) unless it is the last one
    // awake: a task that is awake will finish, and the last one to finish
    // wakes a parked task, so every parked task is woken in the end.
    struct ParkUnlessLast {
        Shared* s;
        bool await_ready() noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> self) {
            std::lock_guard lock(s->mutex);
            if (s->awake == 1) return false;  // go on without suspending
            s->parked.push_back(fiber::current_waker(self));
            --s->awake;
            return true;
        }
        void await_resume() noexcept {}
    };
    auto task = [](Shared& s, int id) -> fiber::Task<> {
        std::atomic<bool> running = false;  // in the frame: one per task
        for (int i = 0; i < kRounds; ++i) {
            if (running.exchange(true)) s.races.fetch_add(1);
            volatile std::uint64_t work = fiber::common::cpu_job(100);  // a window to race in
            (void)work;
            running.store(false);
            switch ((i + id) % 3) {
                case 0:
                    co_await fiber::yield_now();
                    break;
                case 1:
                    co_await HandOff{&s.threads};
                    break;
                default: {
                    fiber::Waker other;
                    {
                        std::lock_guard lock(s.mutex);
                        if (!s.parked.empty()) {
                            other = std::move(s.parked.back());
                            s.parked.pop_back();
                            ++s.awake;
                        }
                    }
                    if (other) std::move(other).wake();  // wake a task parked by another
                    // Park until another task wakes us; the Waker may be
                    // taken and woken on another worker before this worker
                    // has finished suspending us.
                    co_await ParkUnlessLast{&s};
                }
            }
        }
        // The last task awake wakes one parked task, so none is stranded.
        fiber::Waker other;
        {
            std::lock_guard lock(s.mutex);
            if (--s.awake == 0 && !s.parked.empty()) {
                other = std::move(s.parked.back());
                s.parked.pop_back();
                ++s.awake;
            }
        }
        if (other) std::move(other).wake();
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    for (int id = 0; id < kTasks; ++id) spawner.spawn(task(shared, id));
    executor.run();
    EXPECT_EQ(shared.races.load(), 0);
}

TEST(Multithread, RunWaitsForATaskWhoseWakerIsDroppedOnAnotherWorker) {
    // Task T makes a Waker without suspending and hands it over; task U,
    // on the other worker, drops it and ends. Had T's worker put off
    // counting that Waker while U's worker took it away at once, the count
    // would read "nothing left" while T still runs, and run() would return
    // before T's sleep ends. T spins while U runs: two workers are needed.
    struct Shared {
        std::mutex mutex;
        std::optional<fiber::Waker> slot;
        std::atomic<bool> dropped = false;
        std::atomic<bool> finished = false;
        std::atomic<bool> timed_out = false;
    };
    struct MakeWakerAndGoOn {
        Shared* s;
        bool await_ready() noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> self) {
            fiber::Waker w = fiber::current_waker(self);
            std::lock_guard lock(s->mutex);
            s->slot.emplace(std::move(w));
            return false;  // not suspended after all
        }
        void await_resume() noexcept {}
    };
    auto until = [](auto done, Shared& s) {
        const auto give_up = std::chrono::steady_clock::now() + 20s;
        while (!done()) {
            if (std::chrono::steady_clock::now() > give_up) {
                s.timed_out = true;
                return;
            }
        }
    };
    auto t = [](Shared& s, decltype(until) until) -> fiber::Task<> {
        co_await MakeWakerAndGoOn{&s};
        until([&] { return s.dropped.load(); }, s);
        // U's worker counts U's end within microseconds. Not a wait on a
        // condition: a window, wide enough for run() to return under us
        // if the count were wrong.
        const auto window = std::chrono::steady_clock::now() + 50ms;
        while (std::chrono::steady_clock::now() < window) {
        }
        co_await fiber::sleep_for(1ms);
        s.finished = true;
    };
    auto u = [](Shared& s, decltype(until) until) -> fiber::Task<> {
        until(
            [&] {
                std::lock_guard lock(s.mutex);
                if (!s.slot) return false;
                s.slot.reset();  // T's Waker dropped here, on this worker
                return true;
            },
            s);
        s.dropped = true;
        co_return;
    };
    for (int round = 0; round < 5; ++round) {
        Shared s;
        auto [executor, spawner] = fiber::new_executor_and_spawner(2);
        spawner.spawn(t(s, until));
        spawner.spawn(u(s, until));
        executor.run();
        ASSERT_FALSE(s.timed_out.load()) << "T and U never ran at the same time";
        EXPECT_TRUE(s.finished.load()) << "run() returned while T was still running";
    }
}

TEST(Multithread, StopIsSeenByEveryWorker) {
    // Four tasks that never end, one per worker, each yielding for ever.
    // stop() must reach every worker, busy or parked: run() returns only
    // once all four have left their loops, else the test hangs.
    for (int round = 0; round < 20; ++round) {
        std::atomic<int> started = 0;
        auto spin = [](std::atomic<int>& started) -> fiber::Task<> {
            started.fetch_add(1);
            for (;;) co_await fiber::yield_now();
        };
        auto stopper = [](fiber::Executor& e, std::atomic<int>& started) -> fiber::Task<> {
            while (started.load() < 4) co_await fiber::yield_now();
            e.stop();
        };
        auto [executor, spawner] = fiber::new_executor_and_spawner(4);
        for (int i = 0; i < 4; ++i) spawner.spawn(spin(started));
        spawner.spawn(stopper(executor, started));
        executor.run();
        EXPECT_EQ(started.load(), 4);
    }
}

TEST(Multithread, ShutdownWithTasksRunningParkedAndQueuedLeaksNothing) {
    // At the moment stop() takes effect, some tasks run, some are queued,
    // some wait for a timer, some hold a Waker that a foreign thread fires
    // only after the executor is gone. Every frame must be destroyed, and
    // the late wakes must do nothing (ASan checks the memory).
    for (int round = 0; round < 10; ++round) {
        {
            WakerThreads late(1);
            std::vector<fiber::Waker> held(16);
            {
                auto [executor, spawner] = fiber::new_executor_and_spawner(4);
                auto busy = [](LiveCounter) -> fiber::Task<> {
                    for (;;) co_await fiber::yield_now();
                };
                auto sleeper = [](LiveCounter) -> fiber::Task<> { co_await fiber::sleep_for(1h); };
                auto parked = [](LiveCounter, fiber::Waker* slot) -> fiber::Task<> {
                    co_await Park{slot};
                };
                auto stopper = [](fiber::Executor& e, int us) -> fiber::Task<> {
                    co_await fiber::sleep_for(std::chrono::microseconds(us));
                    e.stop();
                };
                for (int i = 0; i < 16; ++i) {
                    spawner.spawn(busy(LiveCounter()));
                    spawner.spawn(sleeper(LiveCounter()));
                    spawner.spawn(parked(LiveCounter(), &held[i]));
                }
                spawner.spawn(stopper(executor, 200 * round + 1));
                executor.run();
                for (int i = 0; i < 4; ++i) spawner.spawn(busy(LiveCounter()));  // never run
            }
            for (fiber::Waker& w : held) {
                if (w) late.push(std::move(w));  // fired after the executor is gone
            }
        }
        EXPECT_EQ(LiveCounter::live(), 0);
    }
}

TEST(Multithread, AnIdleRuntimeWithFourWorkersUsesUnderOnePercentOfACore) {
    // One task sleeps for a second; the four workers have nothing to do.
    // They spin for some microseconds, then park: the process uses well
    // under 10 ms of CPU over that second (a busy loop would use 4 s).
    // Windows counts process CPU time in clock ticks of 10 to 16 ms, so
    // there the nap is longer and the budget the same 1 %.
#ifdef _WIN32
    constexpr auto kNap = 4s;
#else
    constexpr auto kNap = 1s;
#endif
    auto nap = [](std::chrono::seconds d) -> fiber::Task<> { co_await fiber::sleep_for(d); };
    auto [executor, spawner] = fiber::new_executor_and_spawner(4);
    spawner.spawn(nap(kNap));
    const double before = fiber::common::process_cpu_seconds();
    executor.run();
    const double used = fiber::common::process_cpu_seconds() - before;
    EXPECT_LT(used, 0.01 * std::chrono::duration<double>(kNap).count())
        << used * 1e3 << " ms of CPU";
}

namespace {

// A one-way signal between plain threads (the test's, and a worker that a
// task blocks on purpose).
struct Latch {
    std::mutex mutex;
    std::condition_variable changed;
    bool raised = false;
    void raise() {
        std::lock_guard lock(mutex);
        raised = true;
        changed.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex);
        changed.wait(lock, [this] { return raised; });
    }
};

}  // namespace

TEST(Multithread, ASecondConcurrentRunThrows) {
    // run() on a second thread while the first runs: both would be worker
    // 0, popping a queue that only its owner may pop. The second throws.
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    Latch running;
    Latch release;
    auto hold = [](Latch& running, Latch& release) -> fiber::Task<> {
        running.raise();
        release.wait();  // keeps the first run() busy until the second has returned
        co_return;
    };
    spawner.spawn(hold(running, release));
    fiber::Executor* const runner = &executor;  // a binding: Clang 14 cannot capture it
    std::thread first([runner] { runner->run(); });
    running.wait();
    std::string error;
    try {
        executor.run();
    } catch (const std::logic_error& e) {
        error = e.what();
    }
    release.raise();
    first.join();
    EXPECT_NE(error.find("already running"), std::string::npos) << error;
    executor.run();  // the first has returned: a new run() may start
}

TEST(Multithread, RunInsideOneOfItsOwnTasksThrows) {
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    std::string error;
    auto nested = [](fiber::Executor& executor, std::string& error) -> fiber::Task<> {
        try {
            executor.run();
        } catch (const std::logic_error& e) {
            error = e.what();
        }
        co_return;
    };
    spawner.spawn(nested(executor, error));
    executor.run();
    EXPECT_NE(error.find("already running"), std::string::npos) << error;
}
