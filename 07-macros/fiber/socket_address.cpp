// Parsing and formatting addresses with inet_pton / inet_ntop, which know
// every IPv4 and IPv6 spelling, rather than by hand.
#include "fiber/socket_address.hpp"

#include <charconv>
#include <cstring>
#include <stdexcept>

#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#endif

namespace fiber {

namespace {

[[noreturn]] void malformed(std::string_view text, const char* why) {
    throw std::invalid_argument("fiber::SocketAddress: '" + std::string(text) + "' is not " +
                                "an address (" + why + "); expected 127.0.0.1:7878 or [::1]:7878");
}

}  // namespace

SocketAddress SocketAddress::parse(std::string_view text) {
    common::ensure_sockets_started();  // Winsock's inet_pton needs it
    // The port follows the last ':'. An IPv6 host has colons of its own,
    // so it comes in brackets: "[::1]:80".
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) malformed(text, "no ':port'");
    std::string_view host = text.substr(0, colon);
    const std::string_view port_text = text.substr(colon + 1);
    unsigned port = 0;
    const char* end = port_text.data() + port_text.size();
    auto [stop, error] = std::from_chars(port_text.data(), end, port);
    if (port_text.empty() || error != std::errc{} || stop != end || port > 65535) {
        malformed(text, "the port must be a number from 0 to 65535");
    }
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    const std::string host_z(host);  // inet_pton wants a terminated string

    SocketAddress address;
    if (bracketed) {
        sockaddr_in6 v6{};
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(static_cast<std::uint16_t>(port));
        if (inet_pton(AF_INET6, host_z.c_str(), &v6.sin6_addr) != 1) {
            malformed(text, "not an IPv6 address in the brackets");
        }
        std::memcpy(&address.storage_, &v6, sizeof v6);
        address.size_ = sizeof v6;
    } else {
        sockaddr_in v4{};
        v4.sin_family = AF_INET;
        v4.sin_port = htons(static_cast<std::uint16_t>(port));
        if (inet_pton(AF_INET, host_z.c_str(), &v4.sin_addr) != 1) {
            malformed(text, "not an IPv4 address; IPv6 goes in brackets, and names need DNS");
        }
        std::memcpy(&address.storage_, &v4, sizeof v4);
        address.size_ = sizeof v4;
    }
    return address;
}

SocketAddress SocketAddress::from_native(const sockaddr* native, socklen_type size) {
    const bool known =
        (native->sa_family == AF_INET && size >= socklen_type(sizeof(sockaddr_in))) ||
        (native->sa_family == AF_INET6 && size >= socklen_type(sizeof(sockaddr_in6)));
    if (!known || size > socklen_type(sizeof(sockaddr_storage))) {
        throw std::invalid_argument("fiber::SocketAddress: not an IPv4 or IPv6 address");
    }
    SocketAddress address;
    std::memcpy(&address.storage_, native, static_cast<std::size_t>(size));
    address.size_ = size;
    return address;
}

std::uint16_t SocketAddress::port() const {
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
}

std::string SocketAddress::to_string() const {
    common::ensure_sockets_started();
    char host[INET6_ADDRSTRLEN] = {};
    // Copies: Winsock's inet_ntop takes a non-const pointer.
    if (family() == AF_INET6) {
        in6_addr a = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
        if (!inet_ntop(AF_INET6, &a, host, sizeof host)) return "[?]:" + std::to_string(port());
        return "[" + std::string(host) + "]:" + std::to_string(port());
    }
    if (family() != AF_INET) return "(no address)";
    in_addr a = reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr;
    if (!inet_ntop(AF_INET, &a, host, sizeof host)) return "?:" + std::to_string(port());
    return std::string(host) + ":" + std::to_string(port());
}

}  // namespace fiber
