// AsyncFd: a descriptor (a socket on Windows) registered with the reactor.
// Reads and writes try the operation first and wait for readiness only when
// it would block. TCP streams (fiber/tcp.hpp) are built on it: send() writes
// to a socket without ever raising SIGPIPE, and names the peer in its errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/os.hpp"
#include "fiber/budget.hpp"
#include "fiber/reactor.hpp"
#include "fiber/socket_address.hpp"
#include "fiber/task.hpp"

namespace fiber {

/// Waits until a direction of an AsyncFd is ready; gives the readiness tick
/// to pass to AsyncFd::clear_readiness() if the operation still would block.
/// Throws std::system_error (operation_canceled) if the AsyncFd is closed
/// before or while it waits. It holds its own references to the reactor and
/// the source, so it is safe even if the AsyncFd is moved or destroyed.
class ReadinessAwaiter {
public:
    ReadinessAwaiter(std::shared_ptr<detail::Reactor> reactor,
                     std::shared_ptr<detail::IoSource> source, unsigned direction)
        : reactor_(std::move(reactor)), source_(std::move(source)), direction_(direction) {}
    ReadinessAwaiter(ReadinessAwaiter&&) = delete;
    ~ReadinessAwaiter() {
        if (wait_ != 0) reactor_->cancel_wait(*source_, direction_, wait_);
    }

    bool await_ready() noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> self) {
        Waker waker = current_waker(self);
        // ready_or_wait writes wait_ under the reactor's lock, before the
        // waker is published: once it is, another thread may resume this
        // coroutine, and nothing here may touch *this any more.
        if (!reactor_->ready_or_wait(*source_, direction_, tick_, waker, wait_)) return true;
        // Ready at once: no wait, but one unit of the task's budget. Once
        // it is spent, the task yields (fiber/budget.hpp): the Waker it
        // would have waited with wakes it at once, and the readiness seen
        // in tick_ is what await_resume() gives when it runs again.
        if (detail::spend_budget()) return false;
        std::move(waker).wake();
        return true;
    }
    std::uint64_t await_resume() {
        if (wait_ == 0) return tick_;  // was ready: never waited
        wait_ = 0;                     // woken: the reactor took the waker
        return reactor_->woken(*source_, direction_);
    }

private:
    std::shared_ptr<detail::Reactor> reactor_;
    std::shared_ptr<detail::IoSource> source_;
    unsigned direction_;
    std::uint64_t tick_ = 0;
    std::uint64_t wait_ = 0;  // our wait's number while registered, else 0
};

namespace detail {

/// The descriptor of an AsyncFd and its registration, shared by the AsyncFd
/// and every operation in flight, and closed when the last of them lets go.
/// A read woken on one thread may be past its wait, about to call read(),
/// while close() runs on another: closing the number there would make that
/// read fail with EBADF, or read from whatever file gets the number next.
struct OwnedHandle {
    std::shared_ptr<IoSource> source;  // empty until registered
    OwnedHandle() = default;
    OwnedHandle(const OwnedHandle&) = delete;
    OwnedHandle& operator=(const OwnedHandle&) = delete;
    ~OwnedHandle();  // closes source->handle
};

}  // namespace detail

/// Owns a descriptor (a socket on Windows) and its registration with the
/// reactor. It shares the reactor and the descriptor with every operation
/// in flight, so it may outlive its executor (destroying it then just
/// closes the descriptor), and closing it while another task waits on it
/// wakes that task with an error.
class AsyncFd {
public:
    /// Takes ownership of `handle`, makes it non-blocking and registers it
    /// with the reactor of the executor running this task. On failure the
    /// handle is closed, except when another AsyncFd owns it already
    /// (std::errc::file_exists): that one keeps it.
    explicit AsyncFd(common::native_handle handle);
    AsyncFd(AsyncFd&& other) noexcept;
    AsyncFd& operator=(AsyncFd&& other) noexcept;
    ~AsyncFd();  // deregisters, then closes

    /// Reads at most buffer.size() bytes; 0 means end of stream. An error
    /// names the descriptor ("read fd 5: ..."), or `peer` if given ("read
    /// 127.0.0.1:7878: ..."): the operation keeps a copy of it.
    Task<std::size_t> read(std::span<std::byte> buffer, const SocketAddress* peer = nullptr);
    /// Writes at least one byte of `data` (all of it unless the peer is
    /// slow). A reader that is gone is std::system_error (EPIPE), never
    /// SIGPIPE.
    Task<std::size_t> write(std::span<const std::byte> data);
    /// write() for a socket: send() with MSG_NOSIGNAL where it exists, so a
    /// peer that is gone is EPIPE even in a process that has not ignored
    /// SIGPIPE (macOS has no such flag: set SO_NOSIGPIPE on the socket).
    /// Errors name `peer` as read() does.
    Task<std::size_t> send(std::span<const std::byte> data, const SocketAddress* peer = nullptr);
    /// send() until all of `data` is written, waiting whenever the peer
    /// reads slower than we write: one coroutine however many waits it takes.
    Task<> send_all(std::span<const std::byte> data, const SocketAddress* peer = nullptr);

    ReadinessAwaiter readable() { return {reactor_, source(), detail::kReadable}; }
    ReadinessAwaiter writable() { return {reactor_, source(), detail::kWritable}; }
    void clear_readiness(unsigned direction, std::uint64_t tick) {
        reactor_->clear_readiness(*owned()->source, direction, tick);
    }

    /// What an operation needs to wait on this descriptor without this
    /// AsyncFd: a coroutine of its own (TcpListener::accept) keeps a copy,
    /// so the AsyncFd may be moved while it waits, and closing or
    /// destroying it wakes it with operation_canceled, as read() and send().
    struct Registration {
        std::shared_ptr<detail::Reactor> reactor;
        std::shared_ptr<detail::IoSource> source;
    };
    Registration registration() const { return {reactor_, source()}; }

    common::native_handle handle() const noexcept { return handle_; }
    /// Deregisters now; the AsyncFd is then empty. A task waiting on it is
    /// woken, and its operation throws. The descriptor closes once the last
    /// operation in flight returns (at once if none is), so that none ever
    /// uses a number that another file has been given meanwhile.
    void close() noexcept;

private:
    const std::shared_ptr<detail::OwnedHandle>& owned() const;  // throws if closed
    // The source, sharing ownership of the descriptor: what operations hold.
    std::shared_ptr<detail::IoSource> source() const;

    std::shared_ptr<detail::Reactor> reactor_;
    std::shared_ptr<detail::OwnedHandle> owned_;
    common::native_handle handle_ = common::invalid_handle;
};

}  // namespace fiber
