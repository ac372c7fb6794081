// BM_SleepMany/N: N tasks sleep 10 ms at the same time. The sleep itself is
// the same for every stage; what differs is what each pending timer costs:
// an OS thread with a thread per timer, an entry in a heap with a reactor.
// Counters: CPU time of the whole process (timer threads and the reactor
// included) per timer, wall time per timer beyond the 10 ms sleep, and the
// peak memory of the process while the N timers were pending.
#include <benchmark/benchmark.h>

#include <chrono>

#include "common/cpu_time.hpp"
#include "common/peak_memory.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"

namespace {

using namespace std::chrono_literals;

constexpr auto kSleep = 10ms;

fiber::Task<> nap() { co_await fiber::sleep_for(kSleep); }

void BM_SleepMany(benchmark::State& state) {
    const long n = state.range(0);
    fiber::common::reset_peak_rss();
    const double cpu_before = fiber::common::process_cpu_seconds();
    std::chrono::steady_clock::duration beyond_sleep{};
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (long i = 0; i < n; ++i) spawner.spawn(nap());
        executor.run();
        beyond_sleep += std::chrono::steady_clock::now() - start - kSleep;
    }
    const double timers = static_cast<double>(state.iterations() * n);
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["cpu_us_per_timer"] =
        (fiber::common::process_cpu_seconds() - cpu_before) * 1e6 / timers;
    state.counters["overhead_us_per_timer"] =
        std::chrono::duration<double, std::micro>(beyond_sleep).count() / timers;
    state.counters["peak_rss_MiB"] =
        static_cast<double>(fiber::common::peak_rss_bytes()) / (1024.0 * 1024.0);
}
BENCHMARK(BM_SleepMany)
    ->Arg(100)
    ->Arg(1'000)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond);

}  // namespace
