// SocketAddress: an IPv4 or IPv6 address and a port, parsed from and
// formatted to the usual text ("127.0.0.1:7878", "[::1]:7878"). Numeric
// only: resolving "localhost" needs DNS, a blocking call this runtime
// would have to push onto a thread of its own, and the examples do not need it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/os.hpp"

#ifndef _WIN32
#include <sys/socket.h>
#endif

namespace fiber {

#ifdef _WIN32
using socklen_type = int;
#else
using socklen_type = socklen_t;
#endif

/// An IP address and port, held as the sockaddr the OS calls take.
class SocketAddress {
public:
    /// "127.0.0.1:7878" or "[::1]:7878"; the port is 0 to 65535 (0: the
    /// OS picks one when binding). Anything else throws
    /// std::invalid_argument quoting the text.
    static SocketAddress parse(std::string_view text);
    /// Copies what accept() or getsockname() filled in (AF_INET or AF_INET6).
    static SocketAddress from_native(const sockaddr* address, socklen_type size);

    /// Back to text, in the form parse() reads.
    std::string to_string() const;
    std::uint16_t port() const;
    int family() const { return storage_.ss_family; }

    const sockaddr* native() const { return reinterpret_cast<const sockaddr*>(&storage_); }
    socklen_type native_size() const { return size_; }

private:
    sockaddr_storage storage_{};  // big enough for any address family
    socklen_type size_ = 0;
};

}  // namespace fiber
