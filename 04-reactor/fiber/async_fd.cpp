// Non-blocking reads and writes: try, and on "would block" wait for the
// reactor to report readiness, then try again.
#include "fiber/async_fd.hpp"

#include <string>
#include <utility>

#ifndef _WIN32
#include <cerrno>
#include <unistd.h>
#endif

namespace fiber {

AsyncFd::AsyncFd(common::native_handle handle) : handle_(handle) {
    try {
        common::set_nonblocking(handle);
        reactor_ = &detail::current_reactor();
        source_ = reactor_->add_source(handle);
    } catch (...) {
        common::close_handle(handle);  // we own it, even when we fail
        throw;
    }
}

AsyncFd::AsyncFd(AsyncFd&& other) noexcept
    : reactor_(std::exchange(other.reactor_, nullptr)),
      source_(std::exchange(other.source_, nullptr)),
      handle_(std::exchange(other.handle_, common::invalid_handle)) {}

AsyncFd& AsyncFd::operator=(AsyncFd&& other) noexcept {
    if (this != &other) {
        close();
        reactor_ = std::exchange(other.reactor_, nullptr);
        source_ = std::exchange(other.source_, nullptr);
        handle_ = std::exchange(other.handle_, common::invalid_handle);
    }
    return *this;
}

AsyncFd::~AsyncFd() { close(); }

void AsyncFd::close() noexcept {
    if (source_) reactor_->remove_source(std::exchange(source_, nullptr));  // before close()
    if (handle_ != common::invalid_handle) {
        common::close_handle(std::exchange(handle_, common::invalid_handle));
    }
}

namespace {

// One attempt; returns the byte count, or -1 with the error in `error`.
long read_once(common::native_handle h, std::span<std::byte> buffer, int& error) {
#ifdef _WIN32
    int n = ::recv(h, reinterpret_cast<char*>(buffer.data()), static_cast<int>(buffer.size()), 0);
#else
    ssize_t n = ::read(h, buffer.data(), buffer.size());
#endif
    if (n < 0) error = common::last_error();
    return static_cast<long>(n);
}

long write_once(common::native_handle h, std::span<const std::byte> data, int& error) {
#ifdef _WIN32
    int n = ::send(h, reinterpret_cast<const char*>(data.data()), static_cast<int>(data.size()), 0);
#else
    ssize_t n = ::write(h, data.data(), data.size());
#endif
    if (n < 0) error = common::last_error();
    return static_cast<long>(n);
}

bool interrupted(int error) {
#ifdef _WIN32
    return error == WSAEINTR;
#else
    return error == EINTR;
#endif
}

}  // namespace

Task<std::size_t> AsyncFd::read(std::span<std::byte> buffer) {
    for (;;) {
        std::uint64_t tick = co_await readable();
        int error = 0;
        long n = read_once(handle_, buffer, error);
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (interrupted(error)) continue;
        if (!common::would_block(error)) {
            common::throw_error(error, "read fd " + std::to_string(handle_));
        }
        // Would block: forget the readiness we acted on, then wait for the
        // next event. Between the read above and this line an event may
        // have arrived; clear_readiness sees its tick and keeps it.
        clear_readiness(detail::kReadable, tick);
    }
}

Task<std::size_t> AsyncFd::write(std::span<const std::byte> data) {
    for (;;) {
        std::uint64_t tick = co_await writable();
        int error = 0;
        long n = write_once(handle_, data, error);
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (interrupted(error)) continue;
        if (!common::would_block(error)) {
            common::throw_error(error, "write fd " + std::to_string(handle_));
        }
        clear_readiness(detail::kWritable, tick);
    }
}

}  // namespace fiber
