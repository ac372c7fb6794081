// TCP on the reactor: a listener that accepts and a stream that reads and
// writes, both AsyncFds underneath. One task may read a stream while
// another writes it (the reactor keeps a reader and a writer slot).
// A stop request for the task ends any wait with fiber::Cancelled, and
// fiber::timeout() or fiber::select() bound an operation in time: read()
// and accept() are cancel safe there (fiber/cancel_safe.hpp), write_all()
// is not, and says how much it sent if asked.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "fiber/async_fd.hpp"
#include "fiber/cancel_safe.hpp"
#include "fiber/socket_address.hpp"
#include "fiber/task.hpp"

namespace fiber {

/// A connected TCP socket. Every failure is a std::system_error whose
/// what() names the operation and the peer ("read 127.0.0.1:7878: ...").
/// An operation in flight holds its own references to the reactor and the
/// socket's registration, and a copy of the peer's address: moving the
/// stream while a task waits on it is harmless, and closing or destroying it
/// wakes that task with an error (operation_canceled), never a use of freed
/// memory.
class TcpStream {
public:
    /// Connects without blocking the thread; the task waits until the
    /// connection is set up or refused. Must run inside a task. Cancelled
    /// (a timeout, a select), it closes the socket: the peer may have seen
    /// the connection open and close.
    static Task<TcpStream> connect(SocketAddress address);
    static Task<TcpStream> connect(std::string_view address) {
        return connect(SocketAddress::parse(address));
    }

    /// Reads at most buffer.size() bytes; 0 means the peer shut down writing.
    /// Cancel safe: as a branch of select or timeout that lost after it
    /// read, it gives the bytes back, and the next read returns them first.
    Read read(std::span<std::byte> buffer) { return fd_.read(buffer, &peer_); }
    /// Writes at least one byte of `data`; returns how many it wrote.
    /// Cancelled while it waits, it has written nothing.
    Task<std::size_t> write(std::span<const std::byte> data);
    /// Writes all of `data`, waiting whenever the peer reads slower than we
    /// write. Not cancel safe: cancelled (a timeout, a select that another
    /// branch won, a stop request), it may have sent part of `data`, and
    /// the peer then holds half a message. The second form says how much:
    /// `sent` counts the bytes written so far, and must outlive the call.
    Task<> write_all(std::span<const std::byte> data);
    Task<> write_all(std::span<const std::byte> data, std::size_t& sent);

    /// Half-close: the peer reads end of stream, and we can still read
    /// what it sends back.
    void shutdown_write();
    /// Closes now; a task waiting on the stream is woken with an error.
    void close() noexcept { fd_.close(); }
    /// Sends small writes at once instead of batching them (Nagle's algorithm off).
    void set_nodelay(bool on = true);

    const SocketAddress& peer_address() const noexcept { return peer_; }
    common::native_handle handle() const noexcept { return fd_.handle(); }

private:
    friend class TcpListener;
    TcpStream(AsyncFd fd, const SocketAddress& peer) : fd_(std::move(fd)), peer_(peer) {}

    AsyncFd fd_;
    SocketAddress peer_;
};

/// What accept() returns: the new connection and who opened it.
struct Accepted {
    TcpStream stream;
    SocketAddress peer;
};

/// What accept() returns: `co_await` it once for the next connection.
/// Cancel safe: as a branch of select or timeout that lost after it took a
/// connection, it gives the connection back to its listener, and the next
/// accept() returns it first; a connection is never closed unseen.
class [[nodiscard]] Accept {
public:
    Task<Accepted>::Awaiter operator co_await() && { return std::move(task_).operator co_await(); }
    void give_back(Accepted connection) { given_back_->put_back(std::move(connection)); }

private:
    friend class TcpListener;
    Accept(Task<Accepted> task, std::shared_ptr<detail::GivenBack<Accepted>> given_back)
        : task_(std::move(task)), given_back_(std::move(given_back)) {}

    Task<Accepted> task_;
    std::shared_ptr<detail::GivenBack<Accepted>> given_back_;
};

/// A listening TCP socket.
class TcpListener {
public:
    /// Binds and listens; port 0 lets the OS pick a free port, which
    /// local_address() then tells. 1024 queued connections, as Tokio's
    /// default; the OS caps it (Linux: net.core.somaxconn). Must run inside a task.
    static TcpListener bind(const SocketAddress& address, int backlog = 1024);
    static TcpListener bind(std::string_view address, int backlog = 1024) {
        return bind(SocketAddress::parse(address), backlog);
    }

    /// Waits for the next connection. Out of descriptors (EMFILE, ENFILE)
    /// is a std::system_error: the caller decides how long to back off, and
    /// the connection stays queued meanwhile. A connection that the client
    /// gave up before we accepted it is skipped. Like a stream's read, it
    /// holds its own references: the listener may be moved while it waits,
    /// and closing or destroying the listener makes it throw
    /// operation_canceled. Cancel safe (see Accept).
    Accept accept();

    const SocketAddress& local_address() const noexcept { return local_; }
    void close() noexcept { fd_.close(); }
    common::native_handle handle() const noexcept { return fd_.handle(); }

private:
    TcpListener(AsyncFd fd, const SocketAddress& local);
    static Task<Accepted> accept_loop(AsyncFd::Registration fd, SocketAddress local,
                                      std::shared_ptr<detail::GivenBack<Accepted>> given_back);

    AsyncFd fd_;
    SocketAddress local_;
    // Connections that cancelled accepts took and gave back, shared with
    // every Accept in flight: the listener may move while they wait.
    std::shared_ptr<detail::GivenBack<Accepted>> given_back_;
};

}  // namespace fiber
