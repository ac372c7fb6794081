// Parker: puts one worker thread to sleep until another thread unparks it.
// A futex on Linux, a mutex and a condition variable elsewhere. Not
// std::atomic::wait: the mingw-w64 GCC 12 library loses wake-ups in it.
// Used by the executor's idle workers; chapter 7 keeps it as it is.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#ifndef __linux__
#include <condition_variable>
#include <mutex>
#endif

namespace fiber::detail {

/// One token, as Rust's std::thread::park: unpark() before park() makes
/// that park() return at once, so an unpark is never lost however the two
/// threads interleave. Only the owning thread parks; any thread unparks.
class Parker {
public:
    /// Sleeps until the token is there, then takes it. No spurious return.
    void park() noexcept;
    /// The same, but for at most `limit`; it may also return early. Takes
    /// the token if there is one.
    void park_for(std::chrono::microseconds limit) noexcept;
    /// Leaves the token and wakes the owner if it sleeps.
    void unpark() noexcept;

private:
    static constexpr std::uint32_t kEmpty = 0;     // no token, nobody asleep
    static constexpr std::uint32_t kParked = 1;    // the owner sleeps or is about to
    static constexpr std::uint32_t kNotified = 2;  // a token waits for the owner
    // The futex word. unpark() publishes what the unparker did before it
    // (release), park() takes the token with acquire: the woken thread sees
    // every task the unparker queued.
    std::atomic<std::uint32_t> state_{kEmpty};
#ifndef __linux__
    std::mutex mutex_;
    std::condition_variable cv_;
#endif
};

}  // namespace fiber::detail
