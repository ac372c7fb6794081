// AsyncFd: a descriptor (a socket on Windows) registered with the reactor.
// Reads and writes try the operation first and wait for readiness only when
// it would block. TCP streams (fiber/tcp.hpp) are built on it: send() writes
// to a socket without ever raising SIGPIPE, and names the peer in its errors.
// A wait ends early, with fiber::Cancelled, when its task is asked to stop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "common/os.hpp"
#include "fiber/budget.hpp"
#include "fiber/cancel.hpp"
#include "fiber/cancel_safe.hpp"
#include "fiber/reactor.hpp"
#include "fiber/socket_address.hpp"
#include "fiber/stop_state.hpp"
#include "fiber/task.hpp"

namespace fiber {

/// Waits until a direction of an AsyncFd is ready; gives the readiness tick
/// to pass to AsyncFd::clear_readiness() if the operation still would block.
/// Throws std::system_error (operation_canceled) if the AsyncFd is closed
/// before or while it waits, and fiber::Cancelled if its task is asked to
/// stop. It holds its own references to the reactor and the source, so it
/// is safe even if the AsyncFd is moved or destroyed.
class ReadinessAwaiter {
public:
    ReadinessAwaiter(std::shared_ptr<detail::Reactor> reactor,
                     std::shared_ptr<detail::IoSource> source, unsigned direction)
        : reactor_(std::move(reactor)), source_(std::move(source)), direction_(direction) {}
    ReadinessAwaiter(ReadinessAwaiter&&) = delete;
    ~ReadinessAwaiter() {
        stop_.reset();  // first: a callback running elsewhere still uses wait_
        if (wait_ != 0) reactor_->cancel_wait(*source_, direction_, wait_);
    }

    bool await_ready() noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> self) {
        detail::StopState* stop = detail::current_stop_state();
        if (stop && stop->stop_requested()) {
            cancelled_ = true;  // nobody else sees it yet
            return false;
        }
        Waker waker = current_waker(self);
        // Before the waker is published (see Sleep): a stop request that
        // comes before ready_or_wait() sets cancelled_ under the reactor's
        // lock, and ready_or_wait() then stores nothing.
        if (stop) stop_.emplace(stop, Interrupt{this});
        // ready_or_wait writes wait_ under the reactor's lock, before the
        // waker is published: once it is, another thread may resume this
        // coroutine, and nothing here may touch *this any more.
        if (!reactor_->ready_or_wait(*source_, direction_, tick_, waker, wait_, &cancelled_)) {
            return true;
        }
        // Ready at once: no wait, but one unit of the task's budget. Once
        // it is spent, the task yields (fiber/budget.hpp): the Waker it
        // would have waited with wakes it at once, and the readiness seen
        // in tick_ is what await_resume() gives when it runs again. The
        // stop callback stays: a request that comes while the task waits
        // in the queue finds wait_ == 0, so it only sets cancelled_ (the
        // wake is ours), and await_resume() throws Cancelled; nothing was
        // read yet, so nothing is lost.
        if (detail::spend_budget()) return false;
        std::move(waker).wake();
        return true;
    }
    std::uint64_t await_resume() {
        stop_.reset();  // from here on cancelled_ and wait_ are ours alone
        if (cancelled_) {
            wait_ = 0;  // the interrupt took our registration, or it is stale
            throw Cancelled();
        }
        if (wait_ == 0) return tick_;  // was ready: never waited
        wait_ = 0;                     // woken: the reactor took the waker
        return reactor_->woken(*source_, direction_);
    }

private:
    struct Interrupt {
        ReadinessAwaiter* self;  // a member's callback: destroyed before *self
        void operator()() const noexcept {
            self->reactor_->interrupt_wait(*self->source_, self->direction_, self->wait_,
                                           self->cancelled_);
        }
    };

    std::shared_ptr<detail::Reactor> reactor_;
    std::shared_ptr<detail::IoSource> source_;
    unsigned direction_;
    std::uint64_t tick_ = 0;
    std::uint64_t wait_ = 0;  // our wait's number while registered, else 0
    bool cancelled_ = false;  // under the reactor's lock while stop_ is registered
    std::optional<detail::StopCallback<Interrupt>> stop_;
};

namespace detail {

/// The descriptor of an AsyncFd and its registration, shared by the AsyncFd
/// and every operation in flight, and closed when the last of them lets go.
/// A read woken on one thread may be past its wait, about to call read(),
/// while close() runs on another: closing the number there would make that
/// read fail with EBADF, or read from whatever file gets the number next.
struct OwnedHandle {
    std::shared_ptr<IoSource> source;  // empty until registered
    UnreadBytes unread;                // what cancelled reads gave back
    OwnedHandle() = default;
    OwnedHandle(const OwnedHandle&) = delete;
    OwnedHandle& operator=(const OwnedHandle&) = delete;
    ~OwnedHandle();  // closes source->handle
};

}  // namespace detail

/// What read() returns: `co_await` it once for the byte count. Cancel safe:
/// every byte it takes from the descriptor is either in the count it gives
/// or, when select, join or timeout drop that count (another branch won
/// while this one read), given back: the next read returns those bytes
/// first. A cancellation that comes before the read took anything takes
/// nothing. Safe only as the branch itself: a coroutine of your own that
/// awaits a read and returns its count has nothing to give the bytes back
/// to, so pass `stream.read(buffer)` to select, not a wrapper around it.
class [[nodiscard]] Read {
public:
    Task<std::size_t>::Awaiter operator co_await() && {
        return std::move(task_).operator co_await();
    }
    /// The first n bytes of the buffer go back in front of the descriptor's.
    void give_back(std::size_t n) { owned_->unread.put_back(buffer_.first(n)); }

private:
    friend class AsyncFd;
    Read(Task<std::size_t> task, std::shared_ptr<detail::OwnedHandle> owned,
         std::span<std::byte> buffer)
        : task_(std::move(task)), owned_(std::move(owned)), buffer_(buffer) {}

    Task<std::size_t> task_;
    std::shared_ptr<detail::OwnedHandle> owned_;  // the bytes go back here, even after a close
    std::span<std::byte> buffer_;
};

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
    /// 127.0.0.1:7878: ..."): the operation keeps a copy of it. Cancel
    /// safe (see Read): bytes given back come before the descriptor's.
    Read read(std::span<std::byte> buffer, const SocketAddress* peer = nullptr);
    /// Writes at least one byte of `data` (all of it unless the peer is
    /// slow). A reader that is gone is std::system_error (EPIPE), never
    /// SIGPIPE. Cancel safe while it waits (nothing written); a write
    /// that finished as another branch of select won has written its bytes,
    /// and the count is lost with the branch.
    Task<std::size_t> write(std::span<const std::byte> data);
    /// write() for a socket: send() with MSG_NOSIGNAL where it exists, so a
    /// peer that is gone is EPIPE even in a process that has not ignored
    /// SIGPIPE (macOS has no such flag: set SO_NOSIGPIPE on the socket).
    /// Errors name `peer` as read() does.
    Task<std::size_t> send(std::span<const std::byte> data, const SocketAddress* peer = nullptr);
    /// send() until all of `data` is written, waiting whenever the peer
    /// reads slower than we write: one coroutine however many waits it takes.
    /// `sent`, if given, counts the bytes written so far (from 0): after a
    /// cancellation or an error it says how much of `data` went out.
    Task<> send_all(std::span<const std::byte> data, const SocketAddress* peer = nullptr,
                    std::size_t* sent = nullptr);

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
