// The macOS and BSD poller: kqueue, a read and a write filter per handle,
// both EV_CLEAR (edge-triggered), plus an EVFILT_USER event for notify().
// On Linux it builds against libkqueue, which emulates kqueue over epoll.
#if defined(FIBER_POLLER_KQUEUE)

#include <sys/types.h>  // first: older BSDs' <sys/event.h> needs it

#include <sys/event.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_set>

#include "fiber/poller.hpp"

namespace fiber::detail {

namespace {

// The EVFILT_USER event that notify() triggers. Its ident is not a file
// descriptor: each filter has its own namespace of idents, so 0 is free.
constexpr uintptr_t kNotifyIdent = 0;

// A read and a write filter for `fd`, both carrying `key`. kqueue needs
// two registrations where epoll takes one with EPOLLIN | EPOLLOUT.
void both_filters(struct kevent (&changes)[2], int fd, unsigned flags, void* key) {
    EV_SET(&changes[0], fd, EVFILT_READ, flags, 0, 0, key);
    EV_SET(&changes[1], fd, EVFILT_WRITE, flags, 0, 0, key);
}

// Applies both changes; errors[i] is 0 or the errno of changes[i]. Without
// EV_RECEIPT, kevent() stops at the first failing change, leaving the rest
// undone; with it, every change gets an answer. Exactly two answer slots
// leave no room for a real event, which would be taken from wait() and lost.
void apply(int kq, struct kevent (&changes)[2], int (&errors)[2]) {
    struct kevent answers[2];
    for (auto& change : changes) change.flags |= EV_RECEIPT;
    const timespec no_wait{};  // answers come at once; never block here
    int n = kevent(kq, changes, 2, answers, 2, &no_wait);
    if (n < 0) common::throw_last_error("kevent");
    errors[0] = errors[1] = 0;
    for (int i = 0; i < n; ++i) {
        if (!(answers[i].flags & EV_ERROR)) continue;
        errors[answers[i].filter == EVFILT_READ ? 0 : 1] = static_cast<int>(answers[i].data);
    }
}

}  // namespace

struct Poller::State {
    int kq = -1;
    // The descriptors add() accepted and remove() has not yet dropped. EV_ADD
    // of a filter that exists already just updates it, so kqueue alone would
    // let a second add() steal the first one's key without a word. Guarded
    // by `mutex`: add() and remove() run on any thread; wait() never takes it.
    // A caller that closes a descriptor without remove() leaves its number
    // here, and a later add() of that number fails: loudly, as it should.
    std::mutex mutex;
    std::unordered_set<int> watched;
};

Poller::Poller() : state_(std::make_unique<State>()) {
    state_->kq = kqueue();
    if (state_->kq < 0) common::throw_last_error("kqueue");
    // EV_CLEAR: after wait() reports the trigger, the event resets itself,
    // so one wait() returns per batch of notify() calls, like the eventfd
    // that epoll reads back to zero. The null udata is never a key.
    struct kevent change;
    EV_SET(&change, kNotifyIdent, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
    if (kevent(state_->kq, &change, 1, nullptr, 0, nullptr) != 0) {
        int error = errno;
        ::close(state_->kq);
        common::throw_error(error, "kevent EVFILT_USER");
    }
}

Poller::~Poller() { ::close(state_->kq); }

void Poller::add(common::native_handle fd, void* key) {
    const std::string what = "kevent EV_ADD fd " + std::to_string(fd);
    // A regular file or a directory is always ready, and kqueue would say
    // so (macOS and the BSDs accept the filters; epoll refuses with EPERM).
    // Refused here too, with epoll's answer, so that all pollers agree.
    struct stat info;
    if (fstat(fd, &info) != 0) common::throw_last_error(what);
    if (S_ISREG(info.st_mode) || S_ISDIR(info.st_mode)) {
        common::throw_error(EPERM, "add fd " + std::to_string(fd) +
                                       " (a regular file or directory is always ready)");
    }
    // Held across the kevent() call, so that a concurrent remove() of the
    // same fd finds either no registration or a complete one.
    std::lock_guard lock(state_->mutex);
    if (!state_->watched.insert(fd).second) {
        throw std::system_error(std::make_error_code(std::errc::file_exists), what);
    }
    // EV_CLEAR is kqueue's EPOLLET: a filter reports a transition once, not
    // on every wait() while the handle stays ready.
    struct kevent changes[2];
    int errors[2];
    both_filters(changes, fd, EV_ADD | EV_CLEAR, key);
    try {
        apply(state_->kq, changes, errors);
    } catch (...) {
        state_->watched.erase(fd);
        throw;
    }
    // A pipe whose other end is already closed refuses a write filter
    // (EPIPE; EBADF on NetBSD). Nothing can be written to it anyway: a
    // write fails at once, without waiting. The read filter decides.
    if (errors[1] == EPIPE || (errors[1] == EBADF && errors[0] == 0)) errors[1] = 0;
    if (errors[0] != 0 || errors[1] != 0) {
        int error = errors[0] ? errors[0] : errors[1];
        // No half registration left behind: a later add() must start afresh.
        both_filters(changes, fd, EV_DELETE, key);
        try {
            apply(state_->kq, changes, errors);
        } catch (const std::system_error&) {  // the kqueue itself failed: nothing left to undo
        }
        state_->watched.erase(fd);
        common::throw_error(error, what);
    }
}

void Poller::rearm(common::native_handle, void*, unsigned) {
    // EV_CLEAR filters stay armed: the next transition is reported anyway.
}

void Poller::remove(common::native_handle fd, void* key) {
    // Before close(), never after: by then another thread may have opened a
    // new handle with the same number, and we would delete its filters (and
    // libkqueue cannot see a close() at all). udata goes along: some kqueues
    // want it. ENOENT (write filter refused in add) and EBADF are ignored:
    // this runs in destructors.
    std::lock_guard lock(state_->mutex);
    if (state_->watched.erase(fd) == 0) return;  // never added, or add() failed
    struct kevent changes[2];
    int errors[2];
    both_filters(changes, fd, EV_DELETE, key);
    try {
        apply(state_->kq, changes, errors);
    } catch (const std::system_error&) {
    }
}

std::size_t Poller::wait(std::span<PollEvent> out, int timeout_ms) {
    struct kevent events[256];  // a batch, as in the epoll poller
    int max = static_cast<int>(std::min<std::size_t>(out.size(), std::size(events)));
    timespec limit{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000L};
    int n = kevent(state_->kq, nullptr, 0, events, max, timeout_ms < 0 ? nullptr : &limit);
    if (n < 0) {
        if (errno == EINTR) return 0;  // a signal: the caller loops and recomputes its timeout
        common::throw_last_error("kevent wait");
    }
    std::size_t count = 0;
    for (int i = 0; i < n; ++i) {
        const struct kevent& e = events[i];
        if (e.filter == EVFILT_USER) continue;  // notify(): EV_CLEAR has reset it
        // EV_EOF closes the direction of its own filter only. On the read
        // filter it is a half-close, like EPOLLRDHUP: the peer sends nothing
        // more, and we may still write. Tempting but wrong: reporting both
        // closed bits for it. A writer woken by kWriteClosed would fail a
        // write that would have worked. A non-zero fflags with EV_EOF is the
        // socket error, e.g. ECONNRESET, where epoll says EPOLLERR.
        unsigned bits = 0;
        if (e.flags & EV_ERROR) {
            bits = kError;  // data holds the errno
        } else if (e.filter == EVFILT_READ) {
            bits = kReadable | ((e.flags & EV_EOF) ? kReadClosed : 0u);
        } else if (e.filter == EVFILT_WRITE) {
            bits = kWritable | ((e.flags & EV_EOF) ? kWriteClosed : 0u);
        }
        if ((e.flags & EV_EOF) && e.fflags != 0) bits |= kError;
        out[count++] = {e.udata, bits};
    }
    return count;
}

void Poller::notify() {
    struct kevent change;
    EV_SET(&change, kNotifyIdent, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
    // Fails only if the kqueue is gone, but the Poller outlives its callers.
    [[maybe_unused]] int r = kevent(state_->kq, &change, 1, nullptr, 0, nullptr);
}

}  // namespace fiber::detail

#endif  // FIBER_POLLER_KQUEUE
