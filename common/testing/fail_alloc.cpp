// A global operator new that can be told to fail (see fail_alloc.hpp).
#include "common/testing/fail_alloc.hpp"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

// ThreadSanitizer's runtime defines operator new and delete itself, all
// of them at once, so a program cannot replace them: there FailAllocations
// and live_allocations() are not available, and tests that need them skip.
#if defined(__SANITIZE_THREAD__)
#define FIBER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FIBER_TSAN 1
#endif
#endif
#ifndef FIBER_TSAN
#define FIBER_TSAN 0
#endif

namespace {

// Per thread: a test makes its own allocations fail, never the reactor's or
// a timer thread's. SIZE_MAX: no FailAllocations scope is open.
thread_local std::size_t t_allowed = SIZE_MAX;
thread_local bool t_failed = false;
// Relaxed: a statistic, read once the threads that allocate are quiet.
std::atomic<std::size_t> g_live{0};

[[maybe_unused]] void* checked_alloc(std::size_t size) {
    if (t_allowed != SIZE_MAX) {
        if (t_allowed == 0) {
            t_failed = true;
            throw std::bad_alloc();
        }
        --t_allowed;
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        g_live.fetch_add(1, std::memory_order_relaxed);
        return p;
    }
    throw std::bad_alloc();
}

[[maybe_unused]] void checked_free(void* p) noexcept {
    if (!p) return;
    g_live.fetch_sub(1, std::memory_order_relaxed);
    std::free(p);
}

}  // namespace

namespace fiber::common {

FailAllocations::FailAllocations(std::size_t skip) {
    t_allowed = skip;
    t_failed = false;
}

FailAllocations::~FailAllocations() { t_allowed = SIZE_MAX; }

bool FailAllocations::failed() noexcept { return t_failed; }

bool FailAllocations::supported() noexcept { return !FIBER_TSAN; }

std::size_t live_allocations() noexcept { return g_live.load(std::memory_order_relaxed); }

}  // namespace fiber::common

#if !FIBER_TSAN
void* operator new(std::size_t size) { return checked_alloc(size); }
void* operator new[](std::size_t size) { return checked_alloc(size); }
void operator delete(void* p) noexcept { checked_free(p); }
void operator delete[](void* p) noexcept { checked_free(p); }
void operator delete(void* p, std::size_t) noexcept { checked_free(p); }
void operator delete[](void* p, std::size_t) noexcept { checked_free(p); }
#endif
