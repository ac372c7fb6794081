// Parker: the futex (Linux) or the condition variable (everywhere else).
#include "fiber/parker.hpp"

#ifdef __linux__
#include <climits>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fiber::detail {

#ifdef __linux__

namespace {

// FUTEX_WAIT sleeps only if the word still holds `expected` when the kernel
// looks: an unpark() that changed it first makes the wait return at once.
// That check, done by the kernel under its own lock, is what a plain
// "if (state == parked) sleep()" in user space would lose.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
}

void futex_wait_for(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                    std::chrono::microseconds limit) {
    timespec relative{};
    relative.tv_sec = static_cast<time_t>(limit.count() / 1000000);
    relative.tv_nsec = static_cast<long>(limit.count() % 1000000 * 1000);
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            &relative, nullptr, 0);
}

void futex_wake(std::atomic<std::uint32_t>& word) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr,
            nullptr, 0);
}

}  // namespace

void Parker::park() noexcept {
    // A token already there: take it and go on.
    std::uint32_t expected = kNotified;
    if (state_.compare_exchange_strong(expected, kEmpty, std::memory_order_acquire)) return;
    expected = kEmpty;
    if (!state_.compare_exchange_strong(expected, kParked, std::memory_order_acquire)) {
        // The token arrived between the two exchanges.
        state_.exchange(kEmpty, std::memory_order_acquire);
        return;
    }
    for (;;) {
        futex_wait(state_, kParked);  // returns at once if no longer kParked
        expected = kNotified;
        if (state_.compare_exchange_strong(expected, kEmpty, std::memory_order_acquire)) return;
        // A spurious wake-up (a signal, EINTR): still kParked, sleep again.
    }
}

void Parker::park_for(std::chrono::microseconds limit) noexcept {
    std::uint32_t expected = kNotified;
    if (state_.compare_exchange_strong(expected, kEmpty, std::memory_order_acquire)) return;
    expected = kEmpty;
    if (state_.compare_exchange_strong(expected, kParked, std::memory_order_acquire)) {
        // Returns on a wake, at the limit, or early (a signal): all the same
        // to a caller that looks around and decides again.
        futex_wait_for(state_, kParked, limit);
    }
    // Back to empty, taking the token if one came meanwhile.
    state_.exchange(kEmpty, std::memory_order_acquire);
}

void Parker::unpark() noexcept {
    // Only a sleeper needs the system call; a token for a thread that is
    // still awake costs one atomic exchange.
    if (state_.exchange(kNotified, std::memory_order_release) == kParked) futex_wake(state_);
}

#else

void Parker::park() noexcept {
    std::unique_lock lock(mutex_);
    // The token is checked and the sleep begun under the mutex that
    // unpark() holds to leave it: no unpark can fall in between.
    cv_.wait(lock, [this] { return state_.load(std::memory_order_relaxed) == kNotified; });
    state_.store(kEmpty, std::memory_order_relaxed);
}

void Parker::park_for(std::chrono::microseconds limit) noexcept {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, limit,
                 [this] { return state_.load(std::memory_order_relaxed) == kNotified; });
    state_.store(kEmpty, std::memory_order_relaxed);
}

void Parker::unpark() noexcept {
    std::lock_guard lock(mutex_);
    state_.store(kNotified, std::memory_order_relaxed);
    cv_.notify_one();  // under the lock: the owner may otherwise return and free us
}

#endif

}  // namespace fiber::detail
