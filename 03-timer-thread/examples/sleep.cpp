// Four tasks sleep for different times, then each awaits a demo that sleeps
// again. Times are scaled so the run takes about a second; --seconds uses
// whole seconds, as the original does.
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>

#include "common/args.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

Clock::duration g_unit = 200ms;
const Clock::time_point g_start = Clock::now();

long elapsed_ms() {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - g_start).count());
}

fiber::Task<int> demo(int i) {
    co_await fiber::sleep_for(g_unit / 2);
    co_return i * 10;
}

fiber::Task<> sleeper(int i) {
    std::cout << "task " << i << ": sleeping " << i << " units" << std::endl;
    co_await fiber::sleep_for(i * g_unit);
    std::cout << "task " << i << ": woke at " << elapsed_ms() << " ms" << std::endl;
    int value = co_await demo(i);
    std::cout << "task " << i << ": demo returned " << value << " at " << elapsed_ms() << " ms"
              << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--seconds"}, "[--seconds]");
    if (args.has("--seconds")) g_unit = 1s;
    try {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (int i = 1; i <= 4; ++i) spawner.spawn(sleeper(i));
        executor.run();  // returns when every task is done
        std::cout << "all done after " << elapsed_ms() << " ms" << std::endl;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
