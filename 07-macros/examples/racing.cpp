// racing: many light tasks on every worker, woken from every direction at
// once: by themselves (a yield wakes a task that is still running), by
// threads that are not workers (as a reactor or a timer thread would), and
// by each other. Each task marks itself running while it runs; a second
// worker resuming it meanwhile would find the mark: a race. The state word
// of every task makes that impossible, so the last line must say 0.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/args.hpp"
#include "common/cpu_job.hpp"
#include "fiber/executor.hpp"
#include "fiber/yield.hpp"

namespace {

const char* const kUsage =
    "[--threads N] [--tasks 1000] [--rounds 300] [--wakers 2]\n"
    "  --threads N: worker threads (default: one per hardware thread)\n"
    "  --wakers N: threads that are not workers and wake tasks";

// Threads that wake whatever Wakers they are handed.
class WakerThreads {
public:
    explicit WakerThreads(long n) {
        for (long i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
    }
    ~WakerThreads() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    bool empty() const { return threads_.empty(); }
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
            std::move(w).wake();
            lock.lock();
        }
    }
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<fiber::Waker> wakers_;
    bool done_ = false;
    std::vector<std::thread> threads_;
};

struct Shared {
    WakerThreads& threads;
    std::atomic<long> races = 0;
    std::atomic<long> wakes = 0;
    std::mutex mutex{};                   // guards the two below
    std::vector<fiber::Waker> waiting{};  // tasks waiting for another task to wake them
    long active = 0;                      // tasks not finished
};

// Suspends; `park` decides who gets the Waker.
template <typename F>
struct Suspend {
    F park;
    bool await_ready() noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> self) { return park(fiber::current_waker(self)); }
    void await_resume() noexcept {}
};
template <typename F>
Suspend(F) -> Suspend<F>;

fiber::Task<> racer(Shared& s, long id, long rounds) {
    std::atomic<bool> running = false;  // in this task's frame
    for (long i = 0; i < rounds; ++i) {
        if (running.exchange(true)) s.races.fetch_add(1);
        volatile std::uint64_t work = fiber::common::cpu_job(200);  // a window to race in
        (void)work;
        running.store(false);
        s.wakes.fetch_add(1, std::memory_order_relaxed);
        switch ((i + id) % 3) {
            case 0:  // woken by itself, while it is still running
                co_await fiber::yield_now();
                break;
            case 1:  // woken by a thread that is not a worker
                if (s.threads.empty()) {
                    co_await fiber::yield_now();
                } else {
                    co_await Suspend{[&s](fiber::Waker w) {
                        s.threads.push(std::move(w));
                        return true;
                    }};
                }
                break;
            default:  // wake a task that waits, then wait for another to wake us
                co_await Suspend{[&s](fiber::Waker w) {
                    Shared& shared = s;  // on the stack: the frame may be gone below
                    fiber::Waker other;
                    {
                        // Take one and leave ours in one step: done in two,
                        // two tasks could each find the list empty, each
                        // leave its waker, and wait for each other for ever.
                        std::lock_guard lock(shared.mutex);
                        if (!shared.waiting.empty()) {
                            other = std::move(shared.waiting.back());
                            shared.waiting.pop_back();
                        }
                        // Wait only while another task is left to wake us.
                        if (shared.active <= 1) {
                            if (other) shared.waiting.push_back(std::move(other));
                            return false;
                        }
                        shared.waiting.push_back(std::move(w));
                    }
                    // Ours is published: another worker may resume us now,
                    // so from here only stack variables are touched.
                    if (other) std::move(other).wake();
                    return true;
                }};
        }
    }
    std::vector<fiber::Waker> left;
    {
        std::lock_guard lock(s.mutex);
        --s.active;
        left = std::move(s.waiting);  // nobody may be left waiting for us
    }
    for (fiber::Waker& w : left) std::move(w).wake();
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--threads", "--tasks", "--rounds", "--wakers"}, kUsage);
    const long tasks = args.number("--tasks", 1000), rounds = args.number("--rounds", 300);
    try {
        WakerThreads threads(args.number("--wakers", 2));
        Shared shared{threads};
        shared.active = tasks;
        auto [executor, spawner] =
            fiber::new_executor_and_spawner(static_cast<std::size_t>(args.number("--threads", 0)));
        for (long id = 0; id < tasks; ++id) spawner.spawn(racer(shared, id, rounds));
        executor.run();
        std::printf("workers: %zu\n", executor.workers());
        std::printf("tasks: %ld\n", tasks);
        std::printf("wakes: %ld\n", shared.wakes.load());
        std::printf("races: %ld\n", shared.races.load());
        return shared.races == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
