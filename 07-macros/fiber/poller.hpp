// Poller: the one part of the reactor that differs per operating system.
// It watches handles and reports readiness, waits with a timeout, and can
// be woken from another thread. One implementation per OS, chosen by CMake
// (FIBER_POLLER): poller_epoll.cpp (Linux), poller_kqueue.cpp (the kqueue
// systems with EVFILT_USER: FreeBSD, macOS, OpenBSD 7.8+, NetBSD 10+),
// poller_iocp.cpp (Windows, readiness through AFD poll requests).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "common/os.hpp"

namespace fiber::detail {

/// Readiness bits: what a poller reports. Each is a fact about the handle;
/// the reactor decides whom it wakes. Read-closed and write-closed are
/// separate, as in Tokio: a half-closed socket (the peer shut down its
/// sending side) is read-closed only, and can still be written to.
enum Readiness : unsigned {
    kReadable = 1u,
    kWritable = 2u,
    kReadClosed = 4u,   // nothing more will arrive: a read returns 0 (EOF)
    kWriteClosed = 8u,  // nothing more can be sent: a write fails
    kError = 16u,       // an error is pending (a reset, a refused connect)
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
    /// Throws std::system_error: std::errc::file_exists if `handle` is
    /// watched already, and a clear error for a handle this poller cannot
    /// watch (a regular file; on Windows anything but a socket).
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
