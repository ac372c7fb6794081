// Portable OS glue: the native handle of a socket or descriptor, errors as
// std::system_error naming the operation, non-blocking mode, closing, and a
// connected pair of handles. POSIX here; Windows (Winsock) in the #ifdef.
#pragma once

#include <string>
#include <system_error>
#include <utility>

#ifdef _WIN32
#include "common/windows.hpp"
#include <ws2tcpip.h>
#else
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>
#endif

namespace fiber::common {

#ifdef _WIN32
using native_handle = SOCKET;
inline constexpr native_handle invalid_handle = INVALID_SOCKET;
#else
using native_handle = int;
inline constexpr native_handle invalid_handle = -1;
#endif

/// The error code of the last failed OS call on this thread.
inline int last_error() {
#ifdef _WIN32
    return WSAGetLastError();
#else
    return errno;
#endif
}

/// True for "try again later": EAGAIN / EWOULDBLOCK / WSAEWOULDBLOCK.
inline bool would_block(int error) {
#ifdef _WIN32
    return error == WSAEWOULDBLOCK;
#else
    return error == EAGAIN || error == EWOULDBLOCK;
#endif
}

/// Throws std::system_error for `error`; the message starts with `what`,
/// e.g. "bind 127.0.0.1:7878: Address already in use".
[[noreturn]] inline void throw_error(int error, const std::string& what) {
    throw std::system_error(error, std::system_category(), what);
}

[[noreturn]] inline void throw_last_error(const std::string& what) {
    throw_error(last_error(), what);
}

/// Puts a descriptor or socket in non-blocking mode.
inline void set_nonblocking(native_handle h) {
#ifdef _WIN32
    u_long on = 1;
    if (ioctlsocket(h, FIONBIO, &on) != 0) throw_last_error("ioctlsocket FIONBIO");
#else
    int flags = fcntl(h, F_GETFL, 0);
    if (flags < 0 || fcntl(h, F_SETFL, flags | O_NONBLOCK) < 0) {
        throw_last_error("fcntl O_NONBLOCK on fd " + std::to_string(h));
    }
#endif
}

/// Closes a descriptor or socket. Errors are ignored: there is nothing a
/// caller could do about them, and close() must not throw from destructors.
inline void close_handle(native_handle h) noexcept {
#ifdef _WIN32
    closesocket(h);
#else
    ::close(h);
#endif
}

/// Starts Winsock once per process (a no-op elsewhere). Everything that
/// creates a socket calls it first.
void ensure_sockets_started();

/// A connected pair {read end, write end}: a pipe on POSIX; on Windows,
/// where IOCP readiness works on sockets only, two connected loopback
/// TCP sockets.
std::pair<native_handle, native_handle> make_pipe();

}  // namespace fiber::common
