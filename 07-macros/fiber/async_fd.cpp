// Non-blocking reads and writes: try, and on "would block" wait for the
// reactor to report readiness, then try again.
#include "fiber/async_fd.hpp"

#include <optional>
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

detail::OwnedHandle::~OwnedHandle() {
    if (source) common::close_handle(source->handle);
}

AsyncFd::AsyncFd(common::native_handle handle) : handle_(handle) {
    try {
        common::set_nonblocking(handle);
        reactor_ = detail::current_reactor();
        owned_ = std::make_shared<detail::OwnedHandle>();
        owned_->source = reactor_->add_source(handle);  // from here on owned_ closes it
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
      owned_(std::move(other.owned_)),
      handle_(std::exchange(other.handle_, common::invalid_handle)) {}

AsyncFd& AsyncFd::operator=(AsyncFd&& other) noexcept {
    if (this != &other) {
        close();
        reactor_ = std::move(other.reactor_);
        owned_ = std::move(other.owned_);
        handle_ = std::exchange(other.handle_, common::invalid_handle);
    }
    return *this;
}

AsyncFd::~AsyncFd() { close(); }

void AsyncFd::close() noexcept {
    // Deregistered first: wakes the waiters. The descriptor closes when
    // owned_'s last holder lets go: here, unless an operation holds it.
    // (The reactor may keep the source itself a little longer, but not
    // the descriptor: a closed connection must end at once for its peer.)
    if (owned_) reactor_->remove_source(owned_->source);
    owned_.reset();
    reactor_.reset();
    handle_ = common::invalid_handle;
}

const std::shared_ptr<detail::OwnedHandle>& AsyncFd::owned() const {
    if (!owned_) throw std::logic_error("fiber::AsyncFd: closed, or moved from");
    return owned_;
}

std::shared_ptr<detail::IoSource> AsyncFd::source() const {
    const auto& owned = this->owned();
    return {owned, owned->source.get()};  // keeps the descriptor open, not just the source
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

// What a loop's errors name: the operation and the peer's address when the
// caller gave one ("read 127.0.0.1:7878"), else the descriptor ("read fd
// 5"). A copy, not a pointer to the stream's own: the stream may be moved
// or destroyed while the loop waits. The text is built only on failure.
struct Subject {
    const char* operation;  // a string literal
    std::optional<SocketAddress> peer;

    [[noreturn]] void fail(int error, common::native_handle h) const {
        if (!peer) common::throw_error(error, std::string(operation) + " fd " + std::to_string(h));
        common::throw_error(error, std::string(operation) + " " + peer->to_string());
    }
    // The wait failed. The AsyncFd was closed under it: the same error,
    // renamed after the peer; without one, the reactor's text stays, since
    // it names the descriptor already. The poller failed: its text stays,
    // since it names the call that failed.
    [[noreturn]] void rename(const std::system_error& e) const {
        if (!peer || e.code() != std::errc::operation_canceled) throw;
        throw std::system_error(e.code(), std::string(operation) + " " + peer->to_string());
    }
};

Subject subject(const char* operation, const SocketAddress* peer) {
    if (peer) return {operation, *peer};
    return {operation, std::nullopt};
}

// The loops are coroutines of their own, not members: they hold their own
// references to the reactor and the source, and never look at the AsyncFd
// after they start, so moving or destroying it while they wait is safe.
// Each names its errors itself: wrapping it in a second coroutine that
// catches and renames would cost a frame per read.
// `unread` belongs to the OwnedHandle that `source` keeps alive.
Task<std::size_t> read_loop(std::shared_ptr<detail::Reactor> reactor,
                            std::shared_ptr<detail::IoSource> source, detail::UnreadBytes* unread,
                            std::span<std::byte> buffer, Subject subject) {
    // Bytes that a cancelled read gave back were taken before anything
    // still in the socket: they come first.
    if (!unread->empty()) {
        if (std::size_t n = unread->take(buffer)) co_return n;
    }
    for (;;) {
        std::uint64_t tick = 0;
        try {
            tick = co_await ReadinessAwaiter(reactor, source, detail::kReadable);
        } catch (const std::system_error& e) {
            subject.rename(e);
        }
        int error = 0;
        long n = read_once(source->handle, buffer, error);
        if (n >= 0) {
            // A read that did not fill the buffer emptied the socket: the
            // next read would only say EAGAIN, so forget the readiness now
            // and let the next read wait for an event at once (Tokio does
            // the same). Data that arrives after this read is a new event,
            // which clear_drained() sees by its tick or which comes later.
            if (n > 0 && static_cast<std::size_t>(n) < buffer.size()) {
                reactor->clear_drained(*source, tick);
            }
            co_return static_cast<std::size_t>(n);
        }
        if (interrupted(error)) continue;
        if (!common::would_block(error)) subject.fail(error, source->handle);
        // Would block: forget the readiness we acted on, then wait for the
        // next event. Between the read above and this line an event may
        // have arrived; clear_readiness sees its tick and keeps it.
        reactor->clear_readiness(*source, detail::kReadable, tick);
    }
}

// One write after a wake: the bytes written, or nullopt when it would block
// (the readiness it acted on cleared, so the next wait really waits).
std::optional<std::size_t> write_once_ready(detail::Reactor& reactor, detail::IoSource& source,
                                            std::span<const std::byte> data, bool socket,
                                            std::uint64_t tick, const Subject& subject) {
    for (;;) {
        int error = 0;
        long n = write_once(source.handle, data, socket, error);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (interrupted(error)) continue;
        if (!common::would_block(error)) subject.fail(error, source.handle);
        reactor.clear_readiness(source, detail::kWritable, tick);
        return std::nullopt;
    }
}

Task<std::size_t> write_loop(std::shared_ptr<detail::Reactor> reactor,
                             std::shared_ptr<detail::IoSource> source,
                             std::span<const std::byte> data, bool socket, Subject subject) {
    for (;;) {
        std::uint64_t tick = 0;
        try {
            tick = co_await ReadinessAwaiter(reactor, source, detail::kWritable);
        } catch (const std::system_error& e) {
            subject.rename(e);
        }
        if (auto n = write_once_ready(*reactor, *source, data, socket, tick, subject)) co_return *n;
    }
}

// The same, until every byte is written. A short write (the socket buffer
// filled up) leaves the readiness set: the next wait returns at once, and
// the next send() says EAGAIN if the buffer really is full.
Task<> send_all_loop(std::shared_ptr<detail::Reactor> reactor,
                     std::shared_ptr<detail::IoSource> source, std::span<const std::byte> data,
                     Subject subject, std::size_t* sent) {
    if (sent) *sent = 0;
    while (!data.empty()) {
        std::uint64_t tick = 0;
        try {
            tick = co_await ReadinessAwaiter(reactor, source, detail::kWritable);
        } catch (const std::system_error& e) {
            subject.rename(e);
        }
        if (auto n = write_once_ready(*reactor, *source, data, true, tick, subject)) {
            data = data.subspan(*n);
            if (sent) *sent += *n;
        }
    }
}

}  // namespace

Read AsyncFd::read(std::span<std::byte> buffer, const SocketAddress* peer) {
    const auto& owned = this->owned();
    return Read(read_loop(reactor_, source(), &owned->unread, buffer, subject("read", peer)), owned,
                buffer);
}

Task<std::size_t> AsyncFd::write(std::span<const std::byte> data) {
    return write_loop(reactor_, source(), data, false, subject("write", nullptr));
}

Task<std::size_t> AsyncFd::send(std::span<const std::byte> data, const SocketAddress* peer) {
    return write_loop(reactor_, source(), data, true, subject("write", peer));
}

Task<> AsyncFd::send_all(std::span<const std::byte> data, const SocketAddress* peer,
                         std::size_t* sent) {
    return send_all_loop(reactor_, source(), data, subject("write", peer), sent);
}

}  // namespace fiber
