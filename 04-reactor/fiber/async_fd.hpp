// AsyncFd: a descriptor (a socket on Windows) registered with the reactor.
// Reads and writes try the operation first and wait for readiness only when
// it would block. Chapter 5 builds TCP streams on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/os.hpp"
#include "fiber/reactor.hpp"
#include "fiber/task.hpp"

namespace fiber {

/// Waits until a direction of an AsyncFd is ready; gives the readiness tick
/// to pass to AsyncFd::clear_readiness() if the operation still would block.
class ReadinessAwaiter {
public:
    ReadinessAwaiter(detail::Reactor& reactor, detail::IoSource& source, unsigned direction)
        : reactor_(&reactor), source_(&source), direction_(direction) {}
    ReadinessAwaiter(ReadinessAwaiter&&) = delete;
    ~ReadinessAwaiter() {
        if (waiting_) reactor_->cancel_wait(*source_, direction_);
    }

    bool await_ready() noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> self) {
        Waker waker = current_waker(self);
        // Set before the waker is published: once it is, another thread may
        // resume this coroutine, and we must not write to *this any more.
        waiting_ = true;
        bool ready;
        try {
            ready = reactor_->ready_or_wait(*source_, direction_, tick_, waker);
        } catch (...) {
            waiting_ = false;  // nothing was stored
            throw;
        }
        if (!ready) return true;  // suspended; the waker may fire at any moment
        waiting_ = false;         // ready already: not stored, resume at once
        return false;
    }
    std::uint64_t await_resume() {
        if (!waiting_) return tick_;
        waiting_ = false;  // woken: the reactor took the waker
        return reactor_->tick(*source_);
    }

private:
    detail::Reactor* reactor_;
    detail::IoSource* source_;
    unsigned direction_;
    std::uint64_t tick_ = 0;
    bool waiting_ = false;
};

class AsyncFd {
public:
    /// Takes ownership of `handle`, makes it non-blocking and registers it
    /// with the reactor of the executor running this task.
    explicit AsyncFd(common::native_handle handle);
    AsyncFd(AsyncFd&& other) noexcept;
    AsyncFd& operator=(AsyncFd&& other) noexcept;
    ~AsyncFd();  // deregisters, then closes

    /// Reads at most buffer.size() bytes; 0 means end of stream.
    Task<std::size_t> read(std::span<std::byte> buffer);
    /// Writes at least one byte of `data` (all of it unless the peer is slow).
    Task<std::size_t> write(std::span<const std::byte> data);

    ReadinessAwaiter readable() { return {*reactor_, *source_, detail::kReadable}; }
    ReadinessAwaiter writable() { return {*reactor_, *source_, detail::kWritable}; }
    void clear_readiness(unsigned direction, std::uint64_t tick) {
        reactor_->clear_readiness(*source_, direction, tick);
    }

    common::native_handle handle() const noexcept { return handle_; }
    /// Deregisters and closes now; the AsyncFd is then empty.
    void close() noexcept;

private:
    detail::Reactor* reactor_ = nullptr;
    detail::IoSource* source_ = nullptr;
    common::native_handle handle_ = common::invalid_handle;
};

}  // namespace fiber
