// BM_SpawnMany: spawn N empty tasks and run them all.
// BM_YieldMany: one task yields N times.
// Same names in every chapter, so tools/bench-ladder can line them up.
#include <benchmark/benchmark.h>

#include "common/testing/alloc_counter.hpp"
#include "fiber/executor.hpp"
#include "fiber/yield.hpp"

namespace {

fiber::Task<> empty() { co_return; }

fiber::Task<> yield_times(long n) {
    for (long i = 0; i < n; ++i) co_await fiber::yield_now();
}

void BM_SpawnMany(benchmark::State& state) {
    const long n = state.range(0);
    std::size_t bytes = 0;
    for (auto _ : state) {
        const auto before = fiber::common::alloc_stats().bytes;
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        for (long i = 0; i < n; ++i) spawner.spawn(empty());
        executor.run();
        bytes += fiber::common::alloc_stats().bytes - before;
    }
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["bytes_per_task"] =
        static_cast<double>(bytes) / static_cast<double>(state.iterations() * n);
}
BENCHMARK(BM_SpawnMany)->Arg(1'000)->Arg(100'000);

void BM_YieldMany(benchmark::State& state) {
    const long n = state.range(0);
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(yield_times(n));
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_YieldMany)->Arg(100'000);

}  // namespace
