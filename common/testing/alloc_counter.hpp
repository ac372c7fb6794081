// Counts heap allocations made through operator new, process-wide. Linked
// into benchmarks (fiber_alloc_counter) to report bytes per task.
#pragma once

#include <cstddef>

namespace fiber::common {

struct AllocStats {
    std::size_t allocations;
    std::size_t bytes;
};

/// Allocations and bytes requested since the program started.
AllocStats alloc_stats();

}  // namespace fiber::common
