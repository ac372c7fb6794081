// N tasks sleep at the same time, twice: first on the reactor (one thread
// for every timer), then with a thread per timer as in the previous stage.
// Prints the threads started, the time taken and the peak memory of each.
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>

#include "common/args.hpp"
#include "common/peak_memory.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"

using namespace std::chrono_literals;

namespace {

template <typename Sleep>
fiber::Task<> nap(Sleep sleep, std::chrono::milliseconds d, long& done) {
    co_await sleep(d);
    ++done;  // only the executor thread runs tasks: no data race
}

// Returns how many sleeps failed (a thread per timer runs out of threads).
template <typename Sleep>
long run(const char* name, Sleep sleep, long count, std::chrono::milliseconds d) {
    long done = 0;
    const auto threads_before = fiber::timer_threads_started();
    const auto start = std::chrono::steady_clock::now();
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (long i = 0; i < count; ++i) spawner.spawn(nap(sleep, d, done));
        executor.run();
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    std::cout << name << ": " << count << " sleeps of " << d.count() << " ms done: " << done
              << "\n  timer threads started: " << fiber::timer_threads_started() - threads_before
              << "\n  elapsed: " << ms.count() << " ms"
              << "\n  peak memory so far: " << fiber::common::peak_rss_bytes() / 1024 << " KiB"
              << std::endl;
    return count - done;
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--count", "--ms"}, "[--count N] [--ms MILLISECONDS]");
    const long count = args.number("--count", 1000);
    const auto duration = std::chrono::milliseconds(args.number("--ms", 100));
    try {
        // The reactor first: peak memory only grows, so the second figure
        // includes the first.
        long failed = run(
            "reactor", [](auto d) { return fiber::sleep_for(d); }, count, duration);
        failed += run(
            "thread per timer", [](auto d) { return fiber::thread_sleep_for(d); }, count, duration);
        if (failed > 0) {
            std::fprintf(stderr, "error: %ld sleeps failed\n", failed);
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
