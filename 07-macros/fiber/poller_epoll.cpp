// The Linux poller: epoll, edge-triggered, plus an eventfd for notify().
#if defined(FIBER_POLLER_EPOLL)

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <string>
#include <system_error>

#include "fiber/poller.hpp"

namespace fiber::detail {

struct Poller::State {
    int epoll = -1;
    int event = -1;  // eventfd: written by notify(), read by wait()
};

Poller::Poller() : state_(std::make_unique<State>()) {
    state_->epoll = epoll_create1(EPOLL_CLOEXEC);
    if (state_->epoll < 0) common::throw_last_error("epoll_create1");
    state_->event = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (state_->event < 0) {
        int error = errno;
        ::close(state_->epoll);
        common::throw_error(error, "eventfd");
    }
    // The eventfd is registered level-triggered with a null key: while its
    // counter is non-zero, every wait() returns at once, until wait() reads
    // the counter back to zero.
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    if (epoll_ctl(state_->epoll, EPOLL_CTL_ADD, state_->event, &ev) != 0) {
        int error = errno;
        ::close(state_->event);
        ::close(state_->epoll);
        common::throw_error(error, "epoll_ctl ADD eventfd");
    }
}

Poller::~Poller() {
    ::close(state_->event);
    ::close(state_->epoll);
}

void Poller::add(common::native_handle fd, void* key) {
    // EPOLLET: one event per transition, not one per wait while the state
    // lasts. The caller keeps the readiness until an operation would block.
    // EPOLLRDHUP: the peer shut down its writing side (a half-close).
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = key;
    if (epoll_ctl(state_->epoll, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int error = errno;  // before building the message, which may allocate
        const std::string what = "epoll_ctl ADD fd " + std::to_string(fd);
        // EEXIST: watched already. Thrown as the portable code, so callers
        // compare it with std::errc::file_exists alike on every poller.
        // (EPERM is epoll's answer for a regular file: always ready.)
        if (error == EEXIST) {
            throw std::system_error(std::make_error_code(std::errc::file_exists), what);
        }
        common::throw_error(error, what);
    }
}

void Poller::rearm(common::native_handle, void*, unsigned) {
    // Edge-triggered registrations stay armed: nothing to do.
}

void Poller::remove(common::native_handle fd, void*) {
    // Failure here means fd was not registered or is already closed: a
    // caller bug, but one that must not throw from a destructor.
    epoll_ctl(state_->epoll, EPOLL_CTL_DEL, fd, nullptr);
}

std::size_t Poller::wait(std::span<PollEvent> out, int timeout_ms) {
    epoll_event events[256];  // a batch; Tokio's default is 1024 events
    int max = static_cast<int>(std::min<std::size_t>(out.size(), std::size(events)));
    int n = epoll_wait(state_->epoll, events, max, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;  // a signal: the caller loops and recomputes its timeout
        common::throw_last_error("epoll_wait");
    }
    std::size_t count = 0;
    for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {  // notify(): drain the counter
            std::uint64_t value;
            [[maybe_unused]] ssize_t r = ::read(state_->event, &value, sizeof value);
            continue;
        }
        unsigned bits = 0;
        std::uint32_t e = events[i].events;
        if (e & (EPOLLIN | EPOLLPRI)) bits |= kReadable;
        if (e & EPOLLOUT) bits |= kWritable;
        // EPOLLRDHUP: the peer will send nothing more; a read returns 0.
        // EPOLLHUP: both directions are closed (also: a socket that was
        // never connected). EPOLLERR: an error is pending; on a pipe's
        // write end it means the reader is gone.
        if (e & EPOLLRDHUP) bits |= kReadClosed;
        if (e & EPOLLHUP) bits |= kReadClosed | kWriteClosed;
        if (e & EPOLLERR) bits |= kError;
        out[count++] = {events[i].data.ptr, bits};
    }
    return count;
}

void Poller::notify() {
    std::uint64_t one = 1;
    // EAGAIN means the counter is already huge: a wake-up is pending anyway.
    [[maybe_unused]] ssize_t r = ::write(state_->event, &one, sizeof one);
}

}  // namespace fiber::detail

#endif  // FIBER_POLLER_EPOLL
