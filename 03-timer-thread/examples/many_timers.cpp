// N tasks sleep at the same time. With a thread per timer, that is N OS
// threads: this program prints how many were started, how long the whole
// thing took, and the peak memory of the process.
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

fiber::Task<> nap(std::chrono::milliseconds d, long& done) {
    co_await fiber::sleep_for(d);
    ++done;  // only the executor thread runs tasks: no data race
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--count", "--ms"}, "[--count N] [--ms MILLISECONDS]");
    const long count = args.number("--count", 1000);
    const auto duration = std::chrono::milliseconds(args.number("--ms", 100));
    try {
        long done = 0;
        const auto start = std::chrono::steady_clock::now();
        {
            auto [executor, spawner] = fiber::new_executor_and_spawner();
            for (long i = 0; i < count; ++i) spawner.spawn(nap(duration, done));
            executor.run();
        }
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
        std::cout << count << " sleeps of " << duration.count() << " ms done: " << done << "\n"
                  << "timer threads started: " << fiber::timer_threads_started() << "\n"
                  << "elapsed: " << ms.count() << " ms\n"
                  << "peak memory: " << fiber::common::peak_rss_bytes() / 1024 << " KiB"
                  << std::endl;
        if (done != count) {
            std::fprintf(stderr, "error: %ld of %ld sleeps failed\n", count - done, count);
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
