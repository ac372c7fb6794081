// Counts live objects. A coroutine that holds a LiveCounter in its frame
// proves, when the count returns to zero, that its frame was destroyed.
#pragma once

#include <atomic>

namespace fiber::common {

class LiveCounter {
public:
    LiveCounter() { count_.fetch_add(1, std::memory_order_relaxed); }
    LiveCounter(const LiveCounter&) { count_.fetch_add(1, std::memory_order_relaxed); }
    LiveCounter& operator=(const LiveCounter&) = default;
    ~LiveCounter() { count_.fetch_sub(1, std::memory_order_relaxed); }

    /// Objects alive right now. Relaxed is enough: tests read it after the
    /// threads that ran the coroutines have been joined or stopped.
    static long live() { return count_.load(std::memory_order_relaxed); }

private:
    static inline std::atomic<long> count_{0};
};

}  // namespace fiber::common
