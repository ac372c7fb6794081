// Makes an allocation fail on purpose, to test what the runtime does when
// memory runs out, and counts the allocations alive, to test that memory
// is given back. Every test program links the operator new of
// fail_alloc.cpp; it fails only inside a FailAllocations scope, and only on
// the thread that opened it.
#pragma once

#include <cstddef>

namespace fiber::common {

/// While it lives, the allocation after the next `skip` ones on this thread
/// throws std::bad_alloc, and so does every later one. `failed()` says
/// whether any did: a test that expected a failure checks it.
class FailAllocations {
public:
    explicit FailAllocations(std::size_t skip = 0);
    ~FailAllocations();
    FailAllocations(const FailAllocations&) = delete;
    FailAllocations& operator=(const FailAllocations&) = delete;

    static bool failed() noexcept;
    /// False where operator new cannot be replaced (ThreadSanitizer): a
    /// test then skips, saying why.
    static bool supported() noexcept;
};

/// Blocks allocated with operator new and not yet deleted, process-wide.
std::size_t live_allocations() noexcept;

}  // namespace fiber::common
