// heavy_load: CPU-heavy tasks (common/cpu_job.hpp) on a pool of workers.
// Runs the same load on one worker, then on --threads N, and prints how
// long each took, the speed-up, how each worker spent its time (running
// jobs, or not), and what the runtime costs per task beyond the job.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "common/args.hpp"
#include "common/cpu_job.hpp"
#include "fiber/executor.hpp"
#include "fiber/yield.hpp"

namespace {

using Clock = std::chrono::steady_clock;

const char* const kUsage =
    "[--threads N] [--tasks 400] [--slices 10] [--rounds 100000]\n"
    "  --threads N: worker threads (default: one per hardware thread)\n"
    "  each task runs --slices jobs of --rounds xorshift steps, yielding between them";

// Time spent inside jobs, per worker thread (numbered in order of first use).
struct Busy {
    std::mutex mutex;
    std::vector<std::thread::id> threads;
    std::vector<Clock::duration> busy;

    void add(Clock::duration d) {
        std::lock_guard lock(mutex);
        auto me = std::this_thread::get_id();
        auto it = std::find(threads.begin(), threads.end(), me);
        if (it == threads.end()) {
            threads.push_back(me);
            busy.push_back({});
            it = threads.end() - 1;
        }
        busy[static_cast<std::size_t>(it - threads.begin())] += d;
    }
};

fiber::Task<> heavy(Busy& busy, long slices, long rounds, std::uint64_t seed) {
    for (long i = 0; i < slices; ++i) {
        const auto start = Clock::now();
        volatile std::uint64_t result =
            fiber::common::cpu_job(static_cast<std::uint64_t>(rounds), seed + i);
        (void)result;
        busy.add(Clock::now() - start);
        co_await fiber::yield_now();  // a slice at a time, as a server's request would
    }
}

struct Run {
    double seconds;
    Busy busy;
};

void run(Run& out, std::size_t workers, long tasks, long slices, long rounds) {
    auto [executor, spawner] = fiber::new_executor_and_spawner(workers);
    for (long t = 0; t < tasks; ++t) {
        spawner.spawn(heavy(out.busy, slices, rounds, static_cast<std::uint64_t>(t)));
    }
    const auto start = Clock::now();
    executor.run();
    out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--threads", "--tasks", "--slices", "--rounds"}, kUsage);
    const long tasks = args.number("--tasks", 400), slices = args.number("--slices", 10);
    const long rounds = args.number("--rounds", 100'000);
    long threads = args.number("--threads", 0);
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    try {
        Run one{}, many{};
        run(one, 1, tasks, slices, rounds);
        run(many, static_cast<std::size_t>(threads), tasks, slices, rounds);
        std::printf("%ld tasks x %ld slices of cpu_job(%ld)\n", tasks, slices, rounds);
        std::printf("1 worker: %.0f ms\n", one.seconds * 1e3);
        std::printf("%ld workers: %.0f ms\n", threads, many.seconds * 1e3);
        std::printf("speed-up: %.2fx\n", one.seconds / many.seconds);
        Clock::duration total{};
        for (std::size_t i = 0; i < many.busy.busy.size(); ++i) {
            const double share = seconds(many.busy.busy[i]) / many.seconds;
            std::printf("worker %zu: busy %.0f %%, idle %.0f %%\n", i, share * 100,
                        std::max(0.0, 1 - share) * 100);
            total += many.busy.busy[i];
        }
        // What the runtime adds: wall time times workers, minus time in
        // jobs, per slice run (each slice is one resume of a task).
        const double slices_run = static_cast<double>(tasks * slices);
        Clock::duration one_busy{};
        for (auto d : one.busy.busy) one_busy += d;
        std::printf("overhead per task step, 1 worker: %.0f ns\n",
                    (one.seconds - seconds(one_busy)) * 1e9 / slices_run);
        std::printf(
            "overhead per task step, %ld workers: %.0f ns\n", threads,
            (many.seconds * static_cast<double>(threads) - seconds(total)) * 1e9 / slices_run);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
