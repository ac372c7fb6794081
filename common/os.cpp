// The non-inline parts of common/os.hpp.
#include "common/os.hpp"

namespace fiber::common {

#ifdef _WIN32

void ensure_sockets_started() {
    // A function-local static is initialised once, thread-safely.
    static const int started = [] {
        WSADATA data;
        int error = WSAStartup(MAKEWORD(2, 2), &data);
        if (error != 0) throw_error(error, "WSAStartup");
        return 0;
    }();
    (void)started;
}

std::pair<native_handle, native_handle> make_pipe() {
    ensure_sockets_started();
    // Listen on an ephemeral loopback port, connect to it, accept.
    SOCKET listener = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (listener == INVALID_SOCKET) throw_last_error("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int len = sizeof addr;
    SOCKET writer = INVALID_SOCKET;
    SOCKET reader = INVALID_SOCKET;
    if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listener, 1) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        (writer = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)) == INVALID_SOCKET ||
        connect(writer, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        (reader = accept(listener, nullptr, nullptr)) == INVALID_SOCKET) {
        int error = last_error();
        if (writer != INVALID_SOCKET) closesocket(writer);
        closesocket(listener);
        throw_error(error, "socket pair on 127.0.0.1");
    }
    closesocket(listener);
    return {reader, writer};
}

#else

void ensure_sockets_started() {}

std::pair<native_handle, native_handle> make_pipe() {
    int fds[2];
    if (::pipe(fds) != 0) throw_last_error("pipe");
    return {fds[0], fds[1]};
}

#endif

}  // namespace fiber::common
