// One readiness tick per direction: an event in one direction never keeps
// the other direction's stale readiness alive. With one tick for both, a
// reader whose read would block saw the writer's event as "something new
// happened" and tried again, and a reader and a writer on two workers
// retried each other's events (tokio-rs/tokio#8054).
//
// These tests drive a Reactor of their own, not an executor's: nobody else
// polls it (its thread waits in the poller only when an executor asks), so
// every event is dispatched exactly where the test calls poll_ready().
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <tuple>
#include <utility>

#include "common/os.hpp"
#include "fiber/poller.hpp"
#include "fiber/reactor.hpp"
#include "fiber/waker.hpp"

#ifndef _WIN32
#include <sys/socket.h>
#endif

namespace {

using namespace std::chrono_literals;
using fiber::common::native_handle;
using fiber::detail::IoSource;
using fiber::detail::kReadable;
using fiber::detail::kWritable;
using fiber::detail::Reactor;

// Long enough for a loaded machine (or wine) to deliver an event that is
// due at once; short enough that a lost event fails here, not in CTest.
constexpr auto kEventDeadline = 5s;

// Two connected, non-blocking stream sockets, closed at the end of the
// test: `ours` is watched by the reactor, `peer` is the other end, used
// directly. A Unix socket pair has no acknowledgements that could bring a
// writable event of their own; Windows has TCP over loopback.
struct SocketPair {
    SocketPair() {
#ifdef _WIN32
        std::tie(ours, peer) = fiber::common::make_pipe();
#else
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
            fiber::common::throw_last_error("socketpair");
        }
        ours = fds[0];
        peer = fds[1];
#endif
        fiber::common::set_nonblocking(ours);
        fiber::common::set_nonblocking(peer);
    }
    ~SocketPair() {
        fiber::common::close_handle(ours);
        fiber::common::close_handle(peer);
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;
    native_handle ours;
    native_handle peer;
};

// A reactor watching `pair.ours`. The source is removed before the
// sockets close, as AsyncFd does; the reactor stops last.
struct Watched {
    Reactor reactor;
    SocketPair pair;
    std::shared_ptr<IoSource> source = reactor.add_source(pair.ours);
    ~Watched() { reactor.remove_source(source); }
};

long receive(native_handle h, char* buffer, int size) {
    return static_cast<long>(::recv(h, buffer, size, 0));
}

long send_bytes(native_handle h, const char* data, int size) {
#ifdef MSG_NOSIGNAL
    return static_cast<long>(::send(h, data, size, MSG_NOSIGNAL));
#else
    return static_cast<long>(::send(h, data, size, 0));
#endif
}

// The tick of `direction`, as a woken waiter reads it.
std::uint64_t tick_of(Watched& w, unsigned direction) {
    return w.reactor.woken(*w.source, direction);
}

// Polls until an event in `direction` has been dispatched: its tick moves
// past `before`. `between` runs before each poll (to drain the peer).
template <typename F>
void await_event(Watched& w, unsigned direction, std::uint64_t before, F between) {
    const auto deadline = std::chrono::steady_clock::now() + kEventDeadline;
    for (;;) {
        between();
        w.reactor.poll_ready();
        if (tick_of(w, direction) != before) return;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no event came";
        std::this_thread::sleep_for(1ms);  // a pause between polls, not a wait for the event
    }
}

void await_event(Watched& w, unsigned direction, std::uint64_t before) {
    await_event(w, direction, before, [] {});
}

// Whether a task now asking for `direction` would go ahead without
// waiting. If it would wait, the probe's wait is cancelled at once: its
// waker is empty, since nothing may wake it.
bool ready_now(Watched& w, unsigned direction) {
    std::uint64_t tick = 0;
    std::uint64_t wait = 0;
    fiber::Waker none;
    if (w.reactor.ready_or_wait(*w.source, direction, tick, none, wait)) return true;
    w.reactor.cancel_wait(*w.source, direction, wait);
    return false;
}

// Sends until the send buffer is full, so that a writer would now wait.
void fill_the_send_buffer(native_handle h) {
    static const char chunk[64 * 1024] = {};
    const auto deadline = std::chrono::steady_clock::now() + kEventDeadline;
    while (send_bytes(h, chunk, static_cast<int>(sizeof chunk)) > 0) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the send buffer never filled";
    }
    ASSERT_TRUE(fiber::common::would_block(fiber::common::last_error()));
}

// Reads whatever has arrived, so that the other end may send again.
void drain(native_handle h) {
    char buffer[64 * 1024];
    while (receive(h, buffer, static_cast<int>(sizeof buffer)) > 0) {
    }
}

}  // namespace

TEST(ReadinessTicks, AWriteEventDoesNotKeepABlockedReaderReady) {
    Watched w;
    // The reader goes ahead on the optimistic start, and its read would
    // block: nothing has been sent.
    std::uint64_t read_tick = 0;
    std::uint64_t wait = 0;
    fiber::Waker none;
    ASSERT_TRUE(w.reactor.ready_or_wait(*w.source, kReadable, read_tick, none, wait));
    char byte;
    ASSERT_LT(receive(w.pair.ours, &byte, 1), 0);
    ASSERT_TRUE(fiber::common::would_block(fiber::common::last_error()));
    // Meanwhile the writer's direction gets an event: a fresh socket is
    // writable.
    ASSERT_NO_FATAL_FAILURE(await_event(w, kWritable, tick_of(w, kWritable)));
    // The reader forgets the readiness it acted on. The event since then
    // was not a read event, so the next read waits for one.
    w.reactor.clear_readiness(*w.source, kReadable, read_tick);
    EXPECT_FALSE(ready_now(w, kReadable)) << "a write event made a blocked reader try again";
}

TEST(ReadinessTicks, AReadEventDoesNotKeepABlockedWriterReady) {
    Watched w;
    ASSERT_NO_FATAL_FAILURE(await_event(w, kWritable, tick_of(w, kWritable)));  // the first
    // The writer goes ahead, and writes until a write would block: the
    // peer reads nothing, so no write event can come.
    std::uint64_t write_tick = 0;
    std::uint64_t wait = 0;
    fiber::Waker none;
    ASSERT_TRUE(w.reactor.ready_or_wait(*w.source, kWritable, write_tick, none, wait));
    ASSERT_NO_FATAL_FAILURE(fill_the_send_buffer(w.pair.ours));
    // Meanwhile the reader's direction gets an event: the peer sends.
    const std::uint64_t read_tick = tick_of(w, kReadable);
    ASSERT_EQ(send_bytes(w.pair.peer, "x", 1), 1);
    ASSERT_NO_FATAL_FAILURE(await_event(w, kReadable, read_tick));
    // The writer forgets the readiness it acted on: it waits for the peer
    // to read, however much the peer sends.
    w.reactor.clear_readiness(*w.source, kWritable, write_tick);
    EXPECT_FALSE(ready_now(w, kWritable)) << "a read event made a blocked writer try again";
}

TEST(ReadinessTicks, ADrainedReadIsForgottenThoughTheWriterGotAnEvent) {
    Watched w;
    ASSERT_NO_FATAL_FAILURE(await_event(w, kWritable, tick_of(w, kWritable)));  // the first
    // The writer fills the send buffer and waits: its direction is
    // cleared, and a write event comes only when the peer reads.
    std::uint64_t write_tick = 0;
    std::uint64_t wait = 0;
    fiber::Waker none;
    ASSERT_TRUE(w.reactor.ready_or_wait(*w.source, kWritable, write_tick, none, wait));
    ASSERT_NO_FATAL_FAILURE(fill_the_send_buffer(w.pair.ours));
    w.reactor.clear_readiness(*w.source, kWritable, write_tick);
    ASSERT_FALSE(ready_now(w, kWritable));
    // One byte arrives, and the reader reads it with room to spare: the
    // socket is drained, so the next read may as well wait at once.
    const std::uint64_t before = tick_of(w, kReadable);
    ASSERT_EQ(send_bytes(w.pair.peer, "x", 1), 1);
    ASSERT_NO_FATAL_FAILURE(await_event(w, kReadable, before));
    std::uint64_t read_tick = 0;
    ASSERT_TRUE(w.reactor.ready_or_wait(*w.source, kReadable, read_tick, none, wait));
    char buffer[16];
    ASSERT_EQ(receive(w.pair.ours, buffer, static_cast<int>(sizeof buffer)), 1);
    // Meanwhile the peer reads, and the writer's direction gets its event.
    const native_handle peer = w.pair.peer;
    ASSERT_NO_FATAL_FAILURE(
        await_event(w, kWritable, tick_of(w, kWritable), [peer] { drain(peer); }));
    // That was no read event: the drained read's readiness is forgotten.
    w.reactor.clear_drained(*w.source, read_tick);
    EXPECT_FALSE(ready_now(w, kReadable)) << "a write event kept a drained reader ready";
}
