// Poller: the one part of the reactor that differs per operating system.
// It watches handles and reports readiness, waits with a timeout, and can
// be woken from another thread. One implementation per OS, chosen by CMake
// (FIBER_POLLER): poller_epoll.cpp (Linux), poller_kqueue.cpp (macOS, BSD),
// poller_iocp.cpp (Windows, readiness through AFD poll requests).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "common/os.hpp"

namespace fiber::detail {

/// Readiness bits. Hang-up and error wake both the reader and the writer.
enum Readiness : unsigned {
    kReadable = 1u,
    kWritable = 2u,
    kHangup = 4u,
    kError = 8u,
};

/// One readiness report: the key given to add(), and what happened.
struct PollEvent {
    void* key;
    unsigned readiness;
};

/// Edge-triggered readiness: after add(), each transition to readable or
/// writable is reported once; the caller keeps the state until an operation
/// would block. add, rearm, remove and notify may be called from any thread,
/// also while another thread is inside wait().
class Poller {
public:
    Poller();  // throws std::system_error
    ~Poller();
    Poller(const Poller&) = delete;
    Poller& operator=(const Poller&) = delete;

    /// Starts watching `handle` for both directions; its events carry `key`.
    void add(common::native_handle handle, void* key);

    /// An operation in direction `interest` (kReadable and/or kWritable)
    /// just would block: report the next readiness in that direction. epoll
    /// and kqueue stay armed by themselves; IOCP's poll requests are one-shot.
    void rearm(common::native_handle handle, void* key, unsigned interest);

    /// Stops watching `handle`. Call it before closing the handle. A wait()
    /// that starts after remove() returns never reports `key` again.
    void remove(common::native_handle handle, void* key);

    /// Waits at most `timeout_ms` milliseconds (-1: no limit) and writes up
    /// to out.size() events. Returns their number: 0 after a timeout, a
    /// notify() or an interrupted system call.
    std::size_t wait(std::span<PollEvent> out, int timeout_ms);

    /// Makes a current or the next wait() return. Safe from any thread.
    void notify();

private:
    struct State;  // per-OS: the epoll fd, the kqueue, or the port and AFD handle
    std::unique_ptr<State> state_;
};

}  // namespace fiber::detail
