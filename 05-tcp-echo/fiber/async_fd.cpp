// Non-blocking reads and writes: try, and on "would block" wait for the
// reactor to report readiness, then try again.
#include "fiber/async_fd.hpp"

#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#ifndef _WIN32
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace fiber {

AsyncFd::AsyncFd(common::native_handle handle) : handle_(handle) {
    try {
        common::set_nonblocking(handle);
        reactor_ = detail::current_reactor();
        source_ = reactor_->add_source(handle);
    } catch (const std::system_error& e) {
        if (e.code() == std::errc::file_exists) {
            // Closing it would pull the descriptor from under the AsyncFd
            // that owns it, and that one would later close it a second
            // time, perhaps by then another file's number.
            throw std::system_error(e.code(), "fiber::AsyncFd: fd " + std::to_string(handle) +
                                                  " already has an AsyncFd");
        }
        common::close_handle(handle);  // we own it, even when we fail
        throw;
    } catch (...) {
        common::close_handle(handle);
        throw;
    }
}

AsyncFd::AsyncFd(AsyncFd&& other) noexcept
    : reactor_(std::move(other.reactor_)),
      source_(std::move(other.source_)),
      handle_(std::exchange(other.handle_, common::invalid_handle)) {}

AsyncFd& AsyncFd::operator=(AsyncFd&& other) noexcept {
    if (this != &other) {
        close();
        reactor_ = std::move(other.reactor_);
        source_ = std::move(other.source_);
        handle_ = std::exchange(other.handle_, common::invalid_handle);
    }
    return *this;
}

AsyncFd::~AsyncFd() { close(); }

void AsyncFd::close() noexcept {
    if (source_) reactor_->remove_source(source_);  // before close(): wakes the waiters
    source_.reset();
    reactor_.reset();
    if (handle_ != common::invalid_handle) {
        common::close_handle(std::exchange(handle_, common::invalid_handle));
    }
}

const std::shared_ptr<detail::IoSource>& AsyncFd::source() const {
    if (!source_) throw std::logic_error("fiber::AsyncFd: closed, or moved from");
    return source_;
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

// `socket`: send() with MSG_NOSIGNAL instead of write(). Windows has no
// SIGPIPE, and sockets there take send() only.
long write_once(common::native_handle h, std::span<const std::byte> data, bool socket, int& error) {
#ifdef _WIN32
    (void)socket;
    int n = ::send(h, reinterpret_cast<const char*>(data.data()), static_cast<int>(data.size()), 0);
#else
#ifdef MSG_NOSIGNAL
    constexpr int kNoSignal = MSG_NOSIGNAL;
#else
    constexpr int kNoSignal = 0;  // macOS: SO_NOSIGPIPE on the socket instead
#endif
    ssize_t n = socket ? ::send(h, data.data(), data.size(), kNoSignal)
                       : ::write(h, data.data(), data.size());
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

// The loops are coroutines of their own, not members: they hold their own
// references to the reactor and the source, and never look at the AsyncFd
// after they start, so moving or destroying it while they wait is safe.
Task<std::size_t> read_loop(std::shared_ptr<detail::Reactor> reactor,
                            std::shared_ptr<detail::IoSource> source, std::span<std::byte> buffer) {
    for (;;) {
        std::uint64_t tick = co_await ReadinessAwaiter(reactor, source, detail::kReadable);
        int error = 0;
        long n = read_once(source->handle, buffer, error);
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (interrupted(error)) continue;
        if (!common::would_block(error)) {
            common::throw_error(error, "read fd " + std::to_string(source->handle));
        }
        // Would block: forget the readiness we acted on, then wait for the
        // next event. Between the read above and this line an event may
        // have arrived; clear_readiness sees its tick and keeps it.
        reactor->clear_readiness(*source, detail::kReadable, tick);
    }
}

Task<std::size_t> write_loop(std::shared_ptr<detail::Reactor> reactor,
                             std::shared_ptr<detail::IoSource> source,
                             std::span<const std::byte> data, bool socket) {
    for (;;) {
        std::uint64_t tick = co_await ReadinessAwaiter(reactor, source, detail::kWritable);
        int error = 0;
        long n = write_once(source->handle, data, socket, error);
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (interrupted(error)) continue;
        if (!common::would_block(error)) {
            common::throw_error(error, "write fd " + std::to_string(source->handle));
        }
        reactor->clear_readiness(*source, detail::kWritable, tick);
    }
}

}  // namespace

Task<std::size_t> AsyncFd::read(std::span<std::byte> buffer) {
    return read_loop(reactor_, source(), buffer);
}

Task<std::size_t> AsyncFd::write(std::span<const std::byte> data) {
    return write_loop(reactor_, source(), data, false);
}

Task<std::size_t> AsyncFd::send(std::span<const std::byte> data) {
    return write_loop(reactor_, source(), data, true);
}

}  // namespace fiber
