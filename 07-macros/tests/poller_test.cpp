// The Poller on its own, without the reactor: the contract that epoll,
// kqueue and IOCP must all keep. Every test uses loopback TCP sockets, so
// the same code runs on every backend, Windows included.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "common/os.hpp"
#include "fiber/poller.hpp"

#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace {

using namespace std::chrono_literals;
using fiber::common::native_handle;
using fiber::detail::kError;
using fiber::detail::kReadable;
using fiber::detail::kReadClosed;
using fiber::detail::kWritable;
using fiber::detail::kWriteClosed;
using fiber::detail::Poller;
using fiber::detail::PollEvent;

// What the reactor wakes a reader and a writer on (reactor.cpp).
constexpr unsigned kWakesReader = kReadable | kReadClosed | kError;
constexpr unsigned kWakesWriter = kWritable | kWriteClosed | kError;

// Long enough for a loaded CI machine (or wine) to deliver an event that is
// due at once; short enough that a lost event fails the test, not CTest.
constexpr auto kDeadline = 5s;
// A wait in the loops below: short, so a deadline is checked often.
constexpr int kSliceMs = 50;

#ifdef _WIN32
using socklen_type = int;
constexpr int kShutWrite = SD_SEND;
#else
using socklen_type = socklen_t;
constexpr int kShutWrite = SHUT_WR;
#endif

// Two connected loopback TCP sockets, both non-blocking: {ours, peer}.
std::pair<native_handle, native_handle> tcp_pair() {
    fiber::common::ensure_sockets_started();
    native_handle listener = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (listener == fiber::common::invalid_handle) fiber::common::throw_last_error("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto* raw = reinterpret_cast<sockaddr*>(&addr);
    socklen_type len = sizeof addr;
    native_handle ours = fiber::common::invalid_handle;
    native_handle peer = fiber::common::invalid_handle;
    if (::bind(listener, raw, sizeof addr) != 0 || ::listen(listener, 1) != 0 ||
        ::getsockname(listener, raw, &len) != 0 ||
        (ours = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)) == fiber::common::invalid_handle ||
        ::connect(ours, raw, sizeof addr) != 0 ||
        (peer = ::accept(listener, nullptr, nullptr)) == fiber::common::invalid_handle) {
        int error = fiber::common::last_error();
        if (ours != fiber::common::invalid_handle) fiber::common::close_handle(ours);
        fiber::common::close_handle(listener);
        fiber::common::throw_error(error, "loopback TCP pair");
    }
    fiber::common::close_handle(listener);
#ifdef SO_NOSIGPIPE  // macOS and the BSDs: a write to a closed socket must not raise SIGPIPE
    int on = 1;
    ::setsockopt(ours, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
    ::setsockopt(peer, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
    fiber::common::set_nonblocking(ours);
    fiber::common::set_nonblocking(peer);
    return {ours, peer};
}

// Closes both sockets of a pair at the end of a test, unless taken.
struct Pair {
    Pair() { std::tie(ours, peer) = tcp_pair(); }
    ~Pair() {
        if (ours != fiber::common::invalid_handle) fiber::common::close_handle(ours);
        if (peer != fiber::common::invalid_handle) fiber::common::close_handle(peer);
    }
    Pair(const Pair&) = delete;
    Pair& operator=(const Pair&) = delete;
    native_handle ours = fiber::common::invalid_handle;
    native_handle peer = fiber::common::invalid_handle;
};

int send_some(native_handle h, const char* data, int size) {
#if defined(MSG_NOSIGNAL)  // Linux: a write to a closed socket must not raise SIGPIPE
    return static_cast<int>(::send(h, data, static_cast<std::size_t>(size), MSG_NOSIGNAL));
#else
    return static_cast<int>(::send(h, data, size, 0));
#endif
}

// Writes until the send buffer is full, so that a writer would now wait.
void fill_send_buffer(native_handle h) {
    static const std::string chunk(64 * 1024, 'x');
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (send_some(h, chunk.data(), static_cast<int>(chunk.size())) > 0) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the send buffer never filled";
    }
    ASSERT_TRUE(fiber::common::would_block(fiber::common::last_error()));
}

// Resets the connection: with a zero linger time, close() sends RST.
void reset(native_handle& h) {
    linger off{};
    off.l_onoff = 1;
    off.l_linger = 0;
    ASSERT_EQ(
        ::setsockopt(h, SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&off), sizeof off), 0);
    fiber::common::close_handle(h);
    h = fiber::common::invalid_handle;
}

// Collects the readiness a poller reports, per key. Edge-triggered events
// may arrive split over several waits (a read filter, then a write filter;
// an IOCP completion per direction), so the bits accumulate until a test
// clears them.
struct Events {
    explicit Events(Poller& p) : poller(p) {}

    // One bounded wait; adds what it reports.
    void poll_once(int timeout_ms = kSliceMs) {
        PollEvent out[16];
        std::size_t n = poller.wait(out, timeout_ms);
        for (std::size_t i = 0; i < n; ++i) bits[out[i].key] |= out[i].readiness;
    }

    // Waits in short slices until `done()` holds or the deadline passes.
    bool wait_until(const std::function<bool()>& done) {
        const auto deadline = std::chrono::steady_clock::now() + kDeadline;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            poll_once();
        }
        return true;
    }

    // Until `key` has every bit of `wanted`.
    bool wait_for_all(void* key, unsigned wanted) {
        return wait_until([&] { return (bits[key] & wanted) == wanted; });
    }

    // Until `key` has some bit of each mask (e.g. one that wakes a reader
    // and one that wakes a writer).
    bool wait_for_any(void* key, unsigned mask, unsigned other_mask = ~0u) {
        return wait_until([&] { return (bits[key] & mask) && (bits[key] & other_mask); });
    }

    Poller& poller;
    std::map<void*, unsigned> bits;
};

// Readable text for a failure message: "kReadable|kError".
std::string names(unsigned bits) {
    static const std::pair<unsigned, const char*> all[] = {
        {kReadable, "kReadable"},       {kWritable, "kWritable"}, {kReadClosed, "kReadClosed"},
        {kWriteClosed, "kWriteClosed"}, {kError, "kError"},
    };
    std::string text;
    for (auto [bit, name] : all) {
        if (!(bits & bit)) continue;
        if (!text.empty()) text += '|';
        text += name;
    }
    return text.empty() ? "none" : text;
}

// Keys are addresses, as the reactor's IoSource pointers are.
int key_a;
int key_b;

}  // namespace

TEST(Poller, DuplicateAddIsAnError) {
    Poller poller;
    Pair pair;
    poller.add(pair.ours, &key_a);
    try {
        poller.add(pair.ours, &key_b);
        FAIL() << "a second add of one handle was accepted";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::file_exists) << e.what();
    }
    // The refused add left the first registration and its key alone.
    Events events(poller);
    ASSERT_EQ(send_some(pair.peer, "x", 1), 1);
    EXPECT_TRUE(events.wait_for_all(&key_a, kReadable)) << names(events.bits[&key_a]);
    EXPECT_EQ(events.bits[&key_b], 0u);
    // After remove(), the handle may be added again.
    poller.remove(pair.ours, &key_a);
    EXPECT_NO_THROW(poller.add(pair.ours, &key_b));
    poller.remove(pair.ours, &key_b);
}

TEST(Poller, WriteSideIsWritableAtRegistration) {
    Poller poller;
    Pair pair;
    poller.add(pair.ours, &key_a);
    Events events(poller);
    EXPECT_TRUE(events.wait_for_all(&key_a, kWritable)) << names(events.bits[&key_a]);
    EXPECT_FALSE(events.bits[&key_a] & (kReadClosed | kWriteClosed | kError))
        << names(events.bits[&key_a]);
    poller.remove(pair.ours, &key_a);
}

TEST(Poller, ReadableAfterThePeerWrites) {
    Poller poller;
    Pair pair;
    poller.add(pair.ours, &key_a);
    Events events(poller);
    ASSERT_TRUE(events.wait_for_all(&key_a, kWritable));  // registration is settled
    EXPECT_FALSE(events.bits[&key_a] & kReadable) << "readable before any data arrived";
    ASSERT_EQ(send_some(pair.peer, "hello", 5), 5);
    EXPECT_TRUE(events.wait_for_all(&key_a, kReadable)) << names(events.bits[&key_a]);
    poller.remove(pair.ours, &key_a);
}

TEST(Poller, PeerHalfCloseIsReadClosedAndStillWritable) {
    Poller poller;
    Pair pair;
    poller.add(pair.ours, &key_a);
    Events events(poller);
    ASSERT_TRUE(events.wait_for_all(&key_a, kWritable));
    ASSERT_EQ(::shutdown(pair.peer, kShutWrite), 0);
    EXPECT_TRUE(events.wait_for_all(&key_a, kReadClosed)) << names(events.bits[&key_a]);
    // Only the peer's sending side is shut: ours still works, and no bit
    // may tell a writer otherwise.
    EXPECT_FALSE(events.bits[&key_a] & (kWriteClosed | kError)) << names(events.bits[&key_a]);
    EXPECT_EQ(send_some(pair.ours, "still here", 10), 10);
    poller.remove(pair.ours, &key_a);
}

TEST(Poller, PeerResetWakesBothAReaderAndAWriter) {
    Poller poller;
    Pair pair;
    poller.add(pair.ours, &key_a);
    Events events(poller);
    ASSERT_TRUE(events.wait_for_all(&key_a, kWritable));
    // Both directions now wait, as in the reactor: nothing to read, and a
    // full send buffer. Their operations would block, so the reactor
    // rearms both (IOCP's polls are one-shot) and forgets the old bits.
    ASSERT_NO_FATAL_FAILURE(fill_send_buffer(pair.ours));
    poller.rearm(pair.ours, &key_a, kReadable | kWritable);
    events.poll_once(0);
    events.bits.clear();
    ASSERT_NO_FATAL_FAILURE(reset(pair.peer));
    // What the backends report differ: epoll says kError and both closed
    // bits, kqueue's read filter kError (the socket error in fflags), AFD
    // ABORT on both polls. Whatever the form, both directions must wake.
    EXPECT_TRUE(events.wait_for_any(&key_a, kWakesReader, kWakesWriter))
        << names(events.bits[&key_a]);
    RecordProperty("reported", names(events.bits[&key_a]));  // in --gtest_output=xml
    poller.remove(pair.ours, &key_a);
}

TEST(Poller, HangUpWakesAReaderAndAWriteFailsAtOnce) {
    Poller poller;
    Pair pair;
    poller.add(pair.ours, &key_a);
    Events events(poller);
    ASSERT_TRUE(events.wait_for_all(&key_a, kWritable));
    events.bits.clear();
    // Both directions end: we shut down our sending side, the peer closes.
    ASSERT_EQ(::shutdown(pair.ours, kShutWrite), 0);
    fiber::common::close_handle(pair.peer);
    pair.peer = fiber::common::invalid_handle;
    EXPECT_TRUE(events.wait_for_all(&key_a, kReadClosed)) << names(events.bits[&key_a]);
    // epoll and kqueue add kWriteClosed; AFD has no event for our own
    // shutdown. No writer can hang on it either way: the write side is
    // still ready from registration, and a write fails instead of blocking.
    int sent = send_some(pair.ours, "x", 1);
    int error = fiber::common::last_error();
    EXPECT_LT(sent, 0);
    EXPECT_FALSE(fiber::common::would_block(error)) << error;
    RecordProperty("reported", names(events.bits[&key_a]));
    poller.remove(pair.ours, &key_a);
}

TEST(Poller, NotifyFromAnotherThreadEndsABlockedWait) {
    Poller poller;
    std::promise<std::size_t> result;
    auto done = result.get_future();
    std::promise<void> entered;
    std::thread waiter([&] {
        entered.set_value();
        PollEvent out[4];
        result.set_value(poller.wait(out, -1));  // no limit: only notify() ends it
    });
    entered.get_future().wait();
    // The waiter is in wait(), or about to be: notify() ends the current
    // wait or makes the next one return, so either order passes.
    poller.notify();
    bool returned = done.wait_for(kDeadline) == std::future_status::ready;
    if (!returned) poller.notify();  // let the thread end, so join() cannot hang
    waiter.join();
    ASSERT_TRUE(returned) << "wait(-1) did not return after notify()";
    EXPECT_EQ(done.get(), 0u) << "notify() reported as an event";
}

TEST(Poller, NoEventForAKeyAfterRemove) {
    Poller poller;
    Pair removed;
    Pair control;  // still watched: proves the poller went on reporting
    poller.add(removed.ours, &key_a);
    poller.add(control.ours, &key_b);
    Events events(poller);
    ASSERT_TRUE(events.wait_for_all(&key_a, kWritable));
    ASSERT_TRUE(events.wait_for_all(&key_b, kWritable));
    poller.remove(removed.ours, &key_a);
    events.bits.clear();
    ASSERT_EQ(send_some(removed.peer, "x", 1), 1);
    ASSERT_EQ(send_some(control.peer, "x", 1), 1);
    EXPECT_TRUE(events.wait_for_all(&key_b, kReadable));
    for (int i = 0; i < 4; ++i) events.poll_once();  // a little longer, for a late event
    EXPECT_EQ(events.bits[&key_a], 0u) << names(events.bits[&key_a]);
    poller.remove(control.ours, &key_b);
}

#ifndef _WIN32

TEST(Poller, UnsupportedHandleTypeIsRejected) {
    Poller poller;
    char path[] = "/tmp/fiber-poller-test-XXXXXX";
    int file = ::mkstemp(path);
    ASSERT_GE(file, 0);
    ::unlink(path);
    try {
        poller.add(file, &key_a);
        FAIL() << "a regular file was accepted";
    } catch (const std::system_error& e) {
        RecordProperty("error", e.what());
        EXPECT_NE(e.code(), std::errc::file_exists) << e.what();
        EXPECT_NE(std::string(e.what()).find("fd " + std::to_string(file)), std::string::npos)
            << "the message names the handle: " << e.what();
    }
    // The failed add left nothing behind: a socket given the same number
    // can be added and reports events.
    Pair pair;
    ASSERT_EQ(::dup2(pair.ours, file), file);
    poller.add(file, &key_a);
    Events events(poller);
    EXPECT_TRUE(events.wait_for_all(&key_a, kWritable)) << names(events.bits[&key_a]);
    poller.remove(file, &key_a);
    ::close(file);
}

#else

TEST(Poller, UnsupportedHandleTypeIsRejected) {
    Poller poller;
    HANDLE read_end = nullptr;
    HANDLE write_end = nullptr;
    ASSERT_TRUE(CreatePipe(&read_end, &write_end, nullptr, 0));
    // AFD polls sockets only: an anonymous pipe is not one.
    auto handle = reinterpret_cast<native_handle>(read_end);
    try {
        poller.add(handle, &key_a);
        ADD_FAILURE() << "a pipe was accepted";
        poller.remove(handle, &key_a);
    } catch (const std::system_error& e) {
        RecordProperty("error", e.what());
        EXPECT_NE(e.code(), std::errc::file_exists) << e.what();
        EXPECT_NE(std::string(e.what()).find(std::to_string(handle)), std::string::npos)
            << "the message names the handle: " << e.what();
    }
    CloseHandle(read_end);
    CloseHandle(write_end);
}

#endif
