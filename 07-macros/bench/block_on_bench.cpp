// BM_BlockOn: block_on a task that does nothing, and one that runs the
// common CPU job, to see what a round trip through an executor costs.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "common/cpu_job.hpp"
#include "fiber/block_on.hpp"

namespace {

fiber::Task<std::uint64_t> job(std::uint64_t rounds) { co_return fiber::common::cpu_job(rounds); }

void BM_BlockOn(benchmark::State& state, std::uint64_t rounds) {
    for (auto _ : state) benchmark::DoNotOptimize(fiber::block_on(job(rounds)));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_BlockOn, empty, std::uint64_t{0});
BENCHMARK_CAPTURE(BM_BlockOn, cpu_job, std::uint64_t{1000});

}  // namespace
