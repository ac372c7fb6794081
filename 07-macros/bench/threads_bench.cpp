// The same workloads on T = 1, 2, 4 workers.
// BM_SpawnManyThreads/T: spawn 100,000 empty tasks and run them all.
// BM_YieldManyThreads/T: 1,000 tasks yield 1,000 times each (Tokio's
// yield benchmark); items are yields.
// BM_HeavyLoad/T: 400 tasks each run 10 slices of the common CPU job,
// yielding between slices (the heavy_load example); items are tasks.
// The ...Shared variants run the same with the shared queue (one mutex,
// every task through it), so that one run shows both designs.
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

fiber::ExecutorOptions options(const benchmark::State& state, bool shared = false) {
    return {.workers = static_cast<std::size_t>(state.range(0)), .shared_queue = shared};
}

void spawn_many(benchmark::State& state, bool shared) {
    constexpr long kTasks = 100'000;
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner(options(state, shared));
        for (long i = 0; i < kTasks; ++i) spawner.spawn(empty());
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * kTasks);
}

void yield_many(benchmark::State& state, bool shared) {
    constexpr long kTasks = 1'000, kYields = 1'000;
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner(options(state, shared));
        for (long i = 0; i < kTasks; ++i) spawner.spawn(yield_times(kYields));
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * kTasks * kYields);
}

void heavy_load(benchmark::State& state, bool shared) {
    constexpr long kTasks = 400, kSlices = 10;
    for (auto _ : state) {
        auto [executor, spawner] = fiber::new_executor_and_spawner(options(state, shared));
        for (long i = 0; i < kTasks; ++i) spawner.spawn(heavy(kSlices, std::uint64_t(i)));
        executor.run();
    }
    state.SetItemsProcessed(state.iterations() * kTasks);
}

void BM_SpawnManyThreads(benchmark::State& state) { spawn_many(state, false); }
void BM_SpawnManyThreadsShared(benchmark::State& state) { spawn_many(state, true); }
void BM_YieldManyThreads(benchmark::State& state) { yield_many(state, false); }
void BM_YieldManyThreadsShared(benchmark::State& state) { yield_many(state, true); }
void BM_HeavyLoad(benchmark::State& state) { heavy_load(state, false); }
void BM_HeavyLoadShared(benchmark::State& state) { heavy_load(state, true); }

// Real time: the workers other than the benchmark's own thread do the
// work, and their CPU time is not the benchmark thread's.
BENCHMARK(BM_SpawnManyThreads)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK(BM_SpawnManyThreadsShared)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK(BM_YieldManyThreads)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK(BM_YieldManyThreadsShared)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK(BM_HeavyLoad)->Arg(1)->Arg(2)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HeavyLoadShared)->Arg(1)->Arg(2)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
