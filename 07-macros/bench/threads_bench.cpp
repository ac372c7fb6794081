// The same workloads on T = 1, 2, 4 workers.
// BM_SpawnManyThreads/T: spawn 100,000 empty tasks and run them all.
// BM_YieldManyThreads/T: 1,000 tasks yield 1,000 times each (Tokio's
// yield benchmark); items are yields.
// BM_HeavyLoad/T: 400 tasks each run 10 slices of the common CPU job,
// yielding between slices (the heavy_load example); items are tasks.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "common/cpu_job.hpp"
#include "fiber/executor.hpp"
#include "fiber/yield.hpp"

namespace {

fiber::Task<> empty() { co_return; }

fiber::Task<> yield_times(long n) {
    for (long i = 0; i < n; ++i) co_await fiber::yield_now();
}

fiber::Task<> heavy(long slices, std::uint64_t seed) {
    for (long i = 0; i < slices; ++i) {
        benchmark::DoNotOptimize(fiber::common::cpu_job(100'000, seed + i));
        co_await fiber::yield_now();
    }
}

std::size_t workers(const benchmark::State& state) {
    return static_cast<std::size_t>(state.range(0));
}

void BM_SpawnManyThreads(benchmark::State& state) {
    constexpr long kTasks = 100'000;
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner(workers(state));
        for (long i = 0; i < kTasks; ++i) spawner.spawn(empty());
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * kTasks);
}

void BM_YieldManyThreads(benchmark::State& state) {
    constexpr long kTasks = 1'000, kYields = 1'000;
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner(workers(state));
        for (long i = 0; i < kTasks; ++i) spawner.spawn(yield_times(kYields));
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * kTasks * kYields);
}

void BM_HeavyLoad(benchmark::State& state) {
    constexpr long kTasks = 400, kSlices = 10;
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner(workers(state));
        for (long i = 0; i < kTasks; ++i) spawner.spawn(heavy(kSlices, std::uint64_t(i)));
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * kTasks);
}

// Real time: the workers other than the benchmark's own thread do the
// work, and their CPU time is not the benchmark thread's.
BENCHMARK(BM_SpawnManyThreads)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK(BM_YieldManyThreads)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK(BM_HeavyLoad)->Arg(1)->Arg(2)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
