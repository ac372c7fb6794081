// What the echo benchmarks share, so that the runtime (echo_bench.cpp) and
// the floor beside it (echo_floor_bench.cpp) run the very same workload
// and report it the same way.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>

namespace fiber::bench {

// 64 B: small, so what is measured is system calls and the runtime, not
// copying. 100 round trips per client per iteration: at C = 100 an
// iteration is 10,000 round trips, so starting the C client tasks of an
// iteration is noise, and a run still fits several iterations.
inline constexpr std::size_t kMessage = 64;
inline constexpr long kRoundTrips = 100;

/// Round trips per second (items_per_second), and the CPU time of the
/// WHOLE process per round trip: clients, server and reactor thread alike.
/// Where a client and the server share a thread, the server's share
/// cannot be told apart.
inline void report(benchmark::State& state, long round_trips_per_iteration, double cpu_seconds) {
    const long round_trips = static_cast<long>(state.iterations()) * round_trips_per_iteration;
    state.SetItemsProcessed(round_trips);
    if (round_trips > 0) {
        state.counters["cpu_us_per_round_trip"] = cpu_seconds * 1e6 / double(round_trips);
    }
}

/// C = 1, 10, 100 clients. Real time: the benchmark thread sleeps while the
/// reactor or the server threads work, so its own CPU time would inflate
/// round trips per second.
inline void clients(benchmark::internal::Benchmark* b) {
    b->Arg(1)->Arg(10)->Arg(100)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace fiber::bench
