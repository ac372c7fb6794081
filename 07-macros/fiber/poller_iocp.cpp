// The Windows poller: socket readiness through an I/O completion port.
// Sockets only (no pipes or files); one AFD poll request per socket and
// direction, where wepoll batches many sockets into one request.
#if defined(FIBER_POLLER_IOCP)

// IOCP reports finished operations, not readiness. The trick that mio,
// wepoll and libuv use: the Winsock kernel driver, AFD, implements select()
// with a request, IOCTL_AFD_POLL, that names a socket and the events wanted
// and completes when one of them happens. Sent through a handle associated
// with our port, it completes into GetQueuedCompletionStatusEx like any
// other I/O: readiness, delivered by IOCP. The request and its structures
// are undocumented, but have not changed since Windows XP.

#include "fiber/poller.hpp"  // first: winsock2.h must come before windows.h

#include <mswsock.h>  // SIO_BASE_HANDLE
#include <windows.h>
#include <winternl.h>  // NtCreateFile, NtDeviceIoControlFile, IO_STATUS_BLOCK

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>

// The one ntdll function that the mingw-w64 headers do not declare.
extern "C" NTSTATUS NTAPI NtCancelIoFileEx(HANDLE file, PIO_STATUS_BLOCK request,
                                           PIO_STATUS_BLOCK status);

namespace fiber::detail {
namespace {

constexpr ULONG kIoctlAfdPoll = 0x00012024;
constexpr NTSTATUS kStatusCancelled = static_cast<NTSTATUS>(0xC0000120);

// AFD's event bits (AFD_POLL_RECEIVE and so on).
constexpr ULONG kPollReceive = 0x1;
constexpr ULONG kPollSend = 0x4;
constexpr ULONG kPollDisconnect = 0x8;   // the peer shut down its sending side
constexpr ULONG kPollAbort = 0x10;       // the connection was reset
constexpr ULONG kPollLocalClose = 0x20;  // closed here, by a caller that skipped remove()
constexpr ULONG kPollAccept = 0x80;
constexpr ULONG kPollConnectFail = 0x100;
// Failures wake either direction, and a close must end the socket's polls.
// Not RECEIVE_EXPEDITED (0x2, out-of-band data): a plain recv() skips that
// data, so a reader woken for it would block, rearm, and wake, for ever.
constexpr ULONG kAlways = kPollAbort | kPollConnectFail | kPollLocalClose;
constexpr ULONG kReadMask = kPollReceive | kPollAccept | kPollDisconnect | kAlways;
constexpr ULONG kWriteMask = kPollSend | kAlways;

// Completion keys: the AFD handle's completions, and notify()'s packets.
constexpr ULONG_PTR kAfdKey = 1;
constexpr ULONG_PTR kNotifyKey = 2;

struct AfdPollHandleInfo {
    HANDLE handle;
    ULONG events;  // in: the events wanted; out: those that happened
    NTSTATUS status;
};

struct AfdPollInfo {
    LARGE_INTEGER timeout;
    ULONG handle_count;
    ULONG exclusive;  // TRUE: a new exclusive poll on the socket cancels this one
    AfdPollHandleInfo handles[1];
};

struct Sock;

// One AFD poll request: one direction of one socket. The kernel writes
// `iosb` and `info` until the completion is queued, so they live here, not
// on a stack, and this Poll's address is the ApcContext, which comes back
// with the completion and tells wait() whose it is.
struct Poll {
    Poll(Sock* s, ULONG m, unsigned d) : sock(s), mask(m), direction(d) {}
    Sock* sock;
    ULONG mask;            // the AFD events this direction waits for
    unsigned direction;    // kReadable or kWritable
    bool pending = false;  // submitted, and its completion not yet dequeued
    IO_STATUS_BLOCK iosb{};
    AfdPollInfo info{};
};

// AFD polls are one-shot, which gives edge triggering: each direction has
// its own poll, its completion disarms the direction, and rearm() submits
// it again. With two requests (Exclusive is FALSE), arming one direction
// never disturbs the other's pending poll. mio and wepoll use one request
// per socket, which they must cancel and resubmit to widen its mask.
struct Sock {
    Sock(SOCKET b, void* k) : base(b), key(k) {}
    SOCKET base;  // what AFD knows; see base_socket()
    void* key;
    bool removed = false;  // removed: alive only until its polls complete
    Poll polls[2]{{this, kReadMask, kReadable}, {this, kWriteMask, kWritable}};
};

// What AFD's events say about the socket. DISCONNECT is a half-close, like
// epoll's EPOLLRDHUP: read-closed only (a read returns 0), and writes still
// work. Tempting but wrong: both closed bits for it. A writer woken by
// kWriteClosed would fail a write that would have worked. ABORT (a reset)
// and LOCAL_CLOSE end both directions; ABORT and CONNECT_FAIL also leave
// an error for the next operation, which a writable bit lets through.
unsigned readiness(ULONG events) {
    unsigned bits = 0;
    if (events & (kPollReceive | kPollAccept)) bits |= kReadable;
    if (events & kPollSend) bits |= kWritable;
    if (events & kPollDisconnect) bits |= kReadClosed;
    if (events & (kPollAbort | kPollLocalClose)) bits |= kReadClosed | kWriteClosed;
    if (events & kPollAbort) bits |= kError;
    if (events & kPollConnectFail) bits |= kWritable | kError;
    return bits;
}

// A Layered Service Provider may hand out a socket of its own; AFD knows
// only the base socket beneath. (mio and wepoll also try SIO_BSP_HANDLE_*
// for the rare LSP that hides it; we fail instead.)
SOCKET base_socket(SOCKET s) {
    SOCKET base = INVALID_SOCKET;
    DWORD bytes = 0;
    int r = WSAIoctl(s, SIO_BASE_HANDLE, nullptr, 0, &base, sizeof base, &bytes, nullptr, nullptr);
    if (r != 0) {
        // WSAENOTSOCK: a file, a pipe, or no handle at all. Read before
        // building the message, which may allocate.
        int error = WSAGetLastError();
        common::throw_error(error, "add handle " + std::to_string(s) +
                                       ": WSAIoctl SIO_BASE_HANDLE (only sockets can be watched)");
    }
    return base;
}

}  // namespace

struct Poller::State {
    HANDLE port = nullptr;
    HANDLE afd = nullptr;  // \Device\Afd, associated with `port`
    // Guards `socks`, `in_flight` and every Sock and Poll: add, rearm and
    // remove run on any thread while the reactor thread is in wait(), which
    // takes it only after GetQueuedCompletionStatusEx has returned.
    std::mutex mutex;
    std::unordered_map<SOCKET, std::unique_ptr<Sock>> socks;  // the live ones
    std::size_t in_flight = 0;  // polls submitted, completions not yet dequeued
    // True while a notify packet is queued, so that a thousand notify()
    // calls queue one packet. Both sides exchange it (acq_rel): the wait()
    // that resets it reads the last notifier's `true`, and so sees all
    // that notifier wrote before calling notify().
    std::atomic<bool> notified{false};

    ~State() {
        if (afd) CloseHandle(afd);
        if (port) CloseHandle(port);
    }

    void submit(Poll& p) {
        p.info = {};                          // the last completion overwrote it
        p.info.timeout.QuadPart = INT64_MAX;  // never; remove() cancels instead
        p.info.handle_count = 1;
        p.info.exclusive = FALSE;
        p.info.handles[0].handle = reinterpret_cast<HANDLE>(p.sock->base);
        p.info.handles[0].events = p.mask;
        // A poll whose events are true already completes at once, but its
        // completion is still queued: wait() handles it like any other.
        NTSTATUS status = NtDeviceIoControlFile(afd, nullptr, nullptr, &p, &p.iosb, kIoctlAfdPoll,
                                                &p.info, sizeof p.info, &p.info, sizeof p.info);
        if (!NT_SUCCESS(status)) {  // refused at once: no completion will come
            common::throw_error(static_cast<int>(RtlNtStatusToDosError(status)),
                                "IOCTL_AFD_POLL on socket " + std::to_string(p.sock->base));
        }
        p.pending = true;
        ++in_flight;
    }

    // Forgets `sock`. A pending poll keeps it alive (the kernel may still
    // write to it), and its completion frees it, whatever its status.
    void retire(Sock* sock) {
        sock->removed = true;
        bool pending = false;
        for (Poll& p : sock->polls) {
            if (!p.pending) continue;
            pending = true;
            // STATUS_NOT_FOUND: it has completed already; the packet is queued.
            IO_STATUS_BLOCK cancel{};
            NtCancelIoFileEx(afd, &p.iosb, &cancel);
        }
        if (!pending) delete sock;
    }

    // A dequeued completion: the readiness to report, or 0.
    unsigned complete(Poll& p) {
        Sock* sock = p.sock;
        p.pending = false;
        --in_flight;
        if (sock->removed) {
            if (!sock->polls[0].pending && !sock->polls[1].pending) delete sock;
            return 0;
        }
        // Only remove() cancels, so a live socket's poll that failed or saw
        // nothing still wakes its direction: a spurious wake-up costs one
        // operation that would block and a rearm(); a lost one, a hang.
        NTSTATUS status = p.iosb.Status;
        if (status == kStatusCancelled) return p.direction;
        if (!NT_SUCCESS(status)) return p.direction | kError;
        ULONG events = p.info.handle_count > 0 ? p.info.handles[0].events : 0;
        return p.direction | readiness(events);
    }
};

Poller::Poller() : state_(std::make_unique<State>()) {
    // One thread, the reactor's, waits on the port.
    state_->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
    if (!state_->port) common::throw_error(GetLastError(), "CreateIoCompletionPort");
    // Opened without a socket's extended attributes, the AFD device gives a
    // handle that is no socket but can poll any socket. AFD ignores the
    // name after \Device\Afd\; it shows a debugger who opened the handle.
    wchar_t path[] = L"\\Device\\Afd\\Fiber";
    UNICODE_STRING name{sizeof path - sizeof(wchar_t), sizeof path, path};
    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, &name, 0, nullptr, nullptr);
    IO_STATUS_BLOCK iosb{};
    NTSTATUS status = NtCreateFile(&state_->afd, SYNCHRONIZE, &attributes, &iosb, nullptr, 0,
                                   FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN, 0, nullptr, 0);
    if (!NT_SUCCESS(status)) {
        state_->afd = nullptr;
        common::throw_error(static_cast<int>(RtlNtStatusToDosError(status)),
                            "NtCreateFile \\Device\\Afd\\Fiber");
    }
    if (!CreateIoCompletionPort(state_->afd, state_->port, kAfdKey, 0)) {
        common::throw_error(GetLastError(), "CreateIoCompletionPort \\Device\\Afd");
    }
    // Nobody waits on the handle itself: do not signal it per completion.
    SetFileCompletionNotificationModes(state_->afd, FILE_SKIP_SET_EVENT_ON_HANDLE);
}

Poller::~Poller() {
    {
        std::lock_guard lock(state_->mutex);
        for (auto& [handle, sock] : state_->socks) {
            state_->retire(sock.release());
        }
        state_->socks.clear();
    }
    // Cancelled polls complete at once; the bound is for a kernel (or wine)
    // that never completes one. Then we leak its Sock: freeing memory that
    // the kernel may still write is worse. No other thread may use a poller
    // being destroyed, so in_flight needs no lock.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    PollEvent sink[16];
    try {
        while (state_->in_flight > 0 && std::chrono::steady_clock::now() < deadline) {
            wait(sink, 100);  // frees the Socks; reports nothing, all are removed
        }
    } catch (const std::system_error&) {  // the port failed: nothing more will come
    }
    // ~State closes the AFD handle and the port.
}

void Poller::add(common::native_handle handle, void* key) {
    auto sock = std::make_unique<Sock>(base_socket(handle), key);
    std::lock_guard lock(state_->mutex);
    auto [it, inserted] = state_->socks.try_emplace(handle, std::move(sock));
    // Thrown as the portable code: standard libraries differ in how they map
    // ERROR_ALREADY_EXISTS to std::errc, and callers compare with file_exists.
    if (!inserted) {
        throw std::system_error(std::make_error_code(std::errc::file_exists),
                                "add socket " + std::to_string(handle));
    }
    try {
        for (Poll& p : it->second->polls) {
            state_->submit(p);  // both directions
        }
    } catch (...) {
        Sock* raw = it->second.release();
        state_->socks.erase(it);
        state_->retire(raw);
        throw;
    }
}

void Poller::rearm(common::native_handle handle, void*, unsigned interest) {
    std::lock_guard lock(state_->mutex);
    auto it = state_->socks.find(handle);
    if (it == state_->socks.end()) return;  // removed meanwhile: nothing to watch
    // A direction whose poll is pending is armed already. If its completion
    // is queued but not yet dequeued, the caller gets a spurious wake-up.
    for (Poll& p : it->second->polls) {
        if ((interest & p.direction) && !p.pending) state_->submit(p);
    }
}

void Poller::remove(common::native_handle handle, void*) {
    std::lock_guard lock(state_->mutex);
    auto it = state_->socks.find(handle);
    if (it == state_->socks.end()) return;
    Sock* sock = it->second.release();
    state_->socks.erase(it);
    // wait() checks `removed` under the mutex after it dequeued a
    // completion, so from here on no completion of this Sock is reported.
    state_->retire(sock);
}

std::size_t Poller::wait(std::span<PollEvent> out, int timeout_ms) {
    OVERLAPPED_ENTRY entries[256];  // a batch, as in the epoll poller
    ULONG max = static_cast<ULONG>(std::min<std::size_t>(out.size(), std::size(entries)));
    ULONG got = 0;
    DWORD timeout = timeout_ms < 0 ? INFINITE : static_cast<DWORD>(timeout_ms);
    if (!GetQueuedCompletionStatusEx(state_->port, entries, max, &got, timeout, FALSE)) {
        DWORD error = GetLastError();
        if (error == WAIT_TIMEOUT) return 0;
        common::throw_error(static_cast<int>(error), "GetQueuedCompletionStatusEx");
    }
    std::size_t count = 0;  // at most one event per completion: `out` has room
    std::lock_guard lock(state_->mutex);
    for (ULONG i = 0; i < got; ++i) {
        if (entries[i].lpCompletionKey == kNotifyKey) {
            state_->notified.exchange(false, std::memory_order_acq_rel);
            continue;
        }
        auto* poll = reinterpret_cast<Poll*>(entries[i].lpOverlapped);  // the ApcContext
        void* key = poll->sock->key;  // read now: complete() may free the Sock
        if (unsigned bits = state_->complete(*poll)) out[count++] = {key, bits};
    }
    return count;
}

void Poller::notify() {
    if (state_->notified.exchange(true, std::memory_order_acq_rel)) return;  // one is queued
    if (!PostQueuedCompletionStatus(state_->port, 0, kNotifyKey, nullptr)) {
        // Out of memory, at worst: let the next notify() try again.
        state_->notified.store(false, std::memory_order_release);
    }
}

}  // namespace fiber::detail

#endif  // FIBER_POLLER_IOCP
