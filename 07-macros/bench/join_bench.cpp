// BM_Join: co_await fiber::join of two empty tasks, per join.
// BM_Select: fiber::select of two empty tasks (both ready at once), per select.
// BM_SpawnJoin: fiber::spawn an empty task and await its JoinHandle, per
// task; compare with BM_SpawnMany, which spawns without a handle.
// Each runs N times inside one driver task on a fresh executor, so that
// every join, select and spawn is made from inside a task, as in a program.
#include <benchmark/benchmark.h>

#include "common/testing/alloc_counter.hpp"
#include "fiber/executor.hpp"
#include "fiber/join.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/select.hpp"

namespace {

fiber::Task<> empty() { co_return; }

fiber::Task<> join_times(long n) {
    for (long i = 0; i < n; ++i) co_await fiber::join(empty(), empty());
}

fiber::Task<> select_times(long n) {
    for (long i = 0; i < n; ++i) {
        benchmark::DoNotOptimize(co_await fiber::select(empty(), empty()));
    }
}

fiber::Task<> spawn_join_times(long n) {
    for (long i = 0; i < n; ++i) co_await fiber::spawn(empty());
}

// Runs `driver(n)` on a fresh executor, N operations per iteration, and
// reports the bytes allocated per operation.
void run_driver(benchmark::State& state, fiber::Task<> (*driver)(long)) {
    const long n = state.range(0);
    std::size_t bytes = 0;
    for (auto _ : state) {
        const auto before = fiber::common::alloc_stats().bytes;
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(driver(n));
        executor.run();
        bytes += fiber::common::alloc_stats().bytes - before;
    }
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["bytes_per_op"] =
        static_cast<double>(bytes) / static_cast<double>(state.iterations() * n);
}

void BM_Join(benchmark::State& state) { run_driver(state, join_times); }
BENCHMARK(BM_Join)->Arg(100'000);

void BM_Select(benchmark::State& state) { run_driver(state, select_times); }
BENCHMARK(BM_Select)->Arg(100'000);

void BM_SpawnJoin(benchmark::State& state) { run_driver(state, spawn_join_times); }
BENCHMARK(BM_SpawnJoin)->Arg(1'000)->Arg(100'000);

}  // namespace
