// The CPU-bound job used by examples and benchmarks: a fixed amount of
// arithmetic that the optimizer cannot remove, standing in for "real work"
// (parsing a request, hashing a block) between two awaits.
#pragma once

#include <cstdint>

namespace fiber::common {

/// Runs `rounds` steps of a xorshift generator and returns the last value.
/// 1,000 rounds take about a microsecond on a current x86-64 core.
inline std::uint64_t cpu_job(std::uint64_t rounds, std::uint64_t seed = 88172645463325252ull) {
    std::uint64_t x = seed | 1;
    for (std::uint64_t i = 0; i < rounds; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

}  // namespace fiber::common
