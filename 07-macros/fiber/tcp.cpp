// TcpListener and TcpStream: the socket calls, each error named after its
// operation and address, and the waits done by the AsyncFd underneath.
#include "fiber/tcp.hpp"

#include <optional>
#include <string>
#include <system_error>
#include <utility>

#ifndef _WIN32
#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#endif

namespace fiber {

namespace {

using common::native_handle;

void socket_option(native_handle s, int level, int name, int value, const std::string& what) {
    // Windows takes the value as const char*, POSIX as const void*.
    if (::setsockopt(s, level, name, reinterpret_cast<const char*>(&value), sizeof value) != 0) {
        common::throw_last_error(what);
    }
}

// A TCP socket that never blocks the thread, is not inherited by child
// processes, and never raises SIGPIPE (macOS has no MSG_NOSIGNAL).
native_handle open_socket(int family, const std::string& what) {
    common::ensure_sockets_started();
#ifdef SOCK_CLOEXEC  // Linux, the BSDs: both flags at once, no window for a fork
    native_handle s = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
#else
    native_handle s = ::socket(family, SOCK_STREAM, IPPROTO_TCP);
#endif
    if (s == common::invalid_handle) common::throw_last_error(what);
    try {
        common::set_nonblocking(s);
#if !defined(_WIN32) && !defined(SOCK_CLOEXEC)
        if (fcntl(s, F_SETFD, FD_CLOEXEC) != 0) common::throw_last_error(what);
#endif
#ifdef SO_NOSIGPIPE
        socket_option(s, SOL_SOCKET, SO_NOSIGPIPE, 1, what);
#endif
    } catch (...) {
        common::close_handle(s);
        throw;
    }
    return s;
}

bool interrupted(int error) {
#ifdef _WIN32
    return error == WSAEINTR;
#else
    return error == EINTR;
#endif
}

// A connection that its client reset before we accepted it: skip it.
// Wine reports one as WSAENOTCONN: its accept() takes the connection from
// Linux, then fails to read the peer's address.
bool aborted_before_accept(int error) {
#ifdef _WIN32
    return error == WSAECONNRESET || error == WSAECONNABORTED || error == WSAENOTCONN;
#else
    return error == ECONNABORTED || error == EPROTO;  // EPROTO: some older systems
#endif
}

bool connect_in_progress(int error) {
#ifdef _WIN32
    return error == WSAEWOULDBLOCK || error == WSAEINPROGRESS;
#else
    // EINTR: the connection goes on without us, as with EINPROGRESS.
    return error == EINPROGRESS || error == EINTR;
#endif
}

// The same error, with a message that names the operation and the address.
[[noreturn]] void rename(const std::system_error& e, const char* operation,
                         const SocketAddress& address) {
    throw std::system_error(e.code(), std::string(operation) + " " + address.to_string());
}

// 0 when the connection is set up, -1 while it is still under way, else
// the error that ended it.
int connect_result(native_handle s) {
    int error = 0;
    socklen_type size = sizeof error;
    if (::getsockopt(s, SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&error), &size) != 0) {
        return common::last_error();
    }
    if (error != 0) return error;
    // No error is not yet success: the first "writable" may be the
    // optimistic readiness every new AsyncFd starts with.
    sockaddr_storage peer{};
    socklen_type peer_size = sizeof peer;
    if (::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &peer_size) == 0) return 0;
    error = common::last_error();
#ifdef _WIN32
    return error == WSAENOTCONN ? -1 : error;
#else
    return error == ENOTCONN ? -1 : error;
#endif
}

}  // namespace

Task<TcpStream> TcpStream::connect(SocketAddress address) {
    const std::string what = "connect " + address.to_string();
    native_handle s = open_socket(address.family(), what);
    if (::connect(s, address.native(), address.native_size()) != 0) {
        int error = common::last_error();
        if (!connect_in_progress(error)) {
            common::close_handle(s);
            common::throw_error(error, what);
        }
    }
    AsyncFd fd(s);  // owns s from here on, even if it throws
    try {
        for (;;) {
            // Connected, or refused: either way the socket turns writable.
            std::uint64_t tick = co_await fd.writable();
            int result = connect_result(s);
            if (result == 0) break;
            if (result > 0) common::throw_error(result, what);
            fd.clear_readiness(detail::kWritable, tick);
        }
    } catch (const std::system_error& e) {
        rename(e, "connect", address);
    }
    co_return TcpStream(std::move(fd), address);
}

// Not coroutines: each returns the AsyncFd's own loop, which keeps copies
// of what it needs (the reactor, the source, the peer's address) and never
// looks at this stream again. A stream destroyed while its task waits wakes
// that task with an error instead of pulling memory from under it.
Task<std::size_t> TcpStream::write(std::span<const std::byte> data) {
    return fd_.send(data, &peer_);
}

Task<> TcpStream::write_all(std::span<const std::byte> data) { return fd_.send_all(data, &peer_); }

Task<> TcpStream::write_all(std::span<const std::byte> data, std::size_t& sent) {
    return fd_.send_all(data, &peer_, &sent);
}

void TcpStream::shutdown_write() {
#ifdef _WIN32
    const int how = SD_SEND;
#else
    const int how = SHUT_WR;
#endif
    if (::shutdown(fd_.handle(), how) != 0) {
        common::throw_last_error("shutdown " + peer_.to_string());
    }
}

void TcpStream::set_nodelay(bool on) {
    socket_option(fd_.handle(), IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0,
                  "set TCP_NODELAY " + peer_.to_string());
}

TcpListener TcpListener::bind(const SocketAddress& address, int backlog) {
    const std::string what = "bind " + address.to_string();
    native_handle s = open_socket(address.family(), what);
    try {
#ifndef _WIN32
        // Lets a restarted server bind while its old connections linger in
        // TIME_WAIT. Not on Windows: there it lets a second socket steal a
        // port that is in use.
        socket_option(s, SOL_SOCKET, SO_REUSEADDR, 1, what);
#endif
        if (::bind(s, address.native(), address.native_size()) != 0) {
            common::throw_last_error(what);
        }
        if (::listen(s, backlog) != 0) common::throw_last_error("listen " + address.to_string());
    } catch (...) {
        common::close_handle(s);
        throw;
    }
    // Port 0 asked the OS to choose: ask it what it chose.
    sockaddr_storage local{};
    socklen_type size = sizeof local;
    if (::getsockname(s, reinterpret_cast<sockaddr*>(&local), &size) != 0) {
        int error = common::last_error();
        common::close_handle(s);
        common::throw_error(error, "getsockname " + address.to_string());
    }
    const auto bound = SocketAddress::from_native(reinterpret_cast<sockaddr*>(&local), size);
    return TcpListener(AsyncFd(s), bound);
}

// Static, as AsyncFd's loops are free functions: a coroutine that read fd_
// and local_ through `this` after every wait would read freed memory once
// the listener was moved or destroyed meanwhile (a server shutting down).
// It keeps its own references and a copy of the address instead; closing
// the listener wakes it with operation_canceled.
TcpListener::TcpListener(AsyncFd fd, const SocketAddress& local)
    : fd_(std::move(fd)),
      local_(local),
      given_back_(std::make_shared<detail::GivenBack<Accepted>>()) {}

Task<Accepted> TcpListener::accept_loop(AsyncFd::Registration fd, SocketAddress local,
                                        std::shared_ptr<detail::GivenBack<Accepted>> given_back) {
    // A connection that a cancelled accept gave back was queued before
    // any still in the listen queue: it comes first.
    if (!given_back->empty()) {
        if (std::optional<Accepted> connection = given_back->take())
            co_return std::move(*connection);
    }
    for (;;) {
        std::uint64_t tick = 0;
        try {
            tick = co_await ReadinessAwaiter(fd.reactor, fd.source, detail::kReadable);
        } catch (const std::system_error& e) {
            rename(e, "accept", local);
        }
        sockaddr_storage peer{};
        socklen_type size = sizeof peer;
        auto* peer_ptr = reinterpret_cast<sockaddr*>(&peer);
        const native_handle listening = fd.source->handle;
#ifdef __linux__  // the new socket non-blocking and close-on-exec from the start
        native_handle s = ::accept4(listening, peer_ptr, &size, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        native_handle s = ::accept(listening, peer_ptr, &size);
#endif
        if (s != common::invalid_handle) {
#if !defined(_WIN32) && !defined(__linux__)
            (void)fcntl(s, F_SETFD, FD_CLOEXEC);
#endif
#ifdef SO_NOSIGPIPE
            int on = 1;
            (void)::setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
            SocketAddress from = SocketAddress::from_native(peer_ptr, size);
            co_return Accepted{TcpStream(AsyncFd(s), from), from};
        }
        int error = common::last_error();
        if (interrupted(error) || aborted_before_accept(error)) continue;
        // EMFILE and ENFILE land here too: retrying at once would spin, as
        // the connection stays queued; the caller backs off.
        if (!common::would_block(error)) common::throw_error(error, "accept " + local.to_string());
        fd.reactor->clear_readiness(*fd.source, detail::kReadable, tick);
    }
}

Accept TcpListener::accept() {
    return Accept(accept_loop(fd_.registration(), local_, given_back_), given_back_);
}

}  // namespace fiber
