// BM_SleepMany/N: N tasks sleep 1 ms at the same time. The sleep itself is
// the same for every stage; what differs is what each pending timer costs:
// here an OS thread, from the next stage on an entry in the reactor's heap.
#include <benchmark/benchmark.h>

#include <chrono>

#include "common/peak_memory.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"

namespace {

using namespace std::chrono_literals;

fiber::Task<> nap() { co_await fiber::sleep_for(1ms); }

void BM_SleepMany(benchmark::State& state) {
    const long n = state.range(0);
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (long i = 0; i < n; ++i) spawner.spawn(nap());
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * n);
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
