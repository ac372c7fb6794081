// Helpers for the TCP tests: run a test task with a Spawner, wait for
// other tasks to finish, read exactly n bytes, checksum a stream, and an
// echo server and client that count what went right and wrong.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/cpu_time.hpp"
#include "fiber/cancel.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"
#include "fiber/tcp.hpp"
#include "fiber/waker.hpp"

/// Lets one task wait (`co_await countdown.wait()`) until `n` calls of
/// done(). Tasks run on several workers, so the count and the waker slot
/// are under a mutex, and the waiter checks the count and publishes its
/// waker under it in one step: a done() on another worker between the two
/// would otherwise find no waker and leave the waiter asleep for ever.
class Countdown {
public:
    explicit Countdown(int n) : left_(n) {}
    void done() {
        fiber::Waker waiter;
        {
            std::lock_guard lock(mutex_);
            if (--left_ == 0) waiter = std::move(waiter_);
        }
        if (waiter) std::move(waiter).wake();  // outside the lock: the waiter may run at once
    }
    auto wait() {
        struct Awaiter {
            Countdown* countdown;
            bool await_ready() const noexcept { return false; }
            bool await_suspend(std::coroutine_handle<> self) {
                fiber::Waker waker = fiber::current_waker(self);
                std::lock_guard lock(countdown->mutex_);
                if (countdown->left_ <= 0) return false;  // all done: do not suspend
                countdown->waiter_ = std::move(waker);
                return true;
            }
            void await_resume() const noexcept {}
        };
        return Awaiter{this};
    }

private:
    std::mutex mutex_;
    int left_;
    fiber::Waker waiter_;
};

/// Runs `test(spawner)` on a fresh executor until it returns, then stops
/// the executor: tasks still waiting (an accept loop) are destroyed. An
/// exception that escapes the test fails it. `workers`: 1 for a test that
/// relies on one thread's order ("after this yield, the other task waits").
template <typename F>
void run_test(F&& test, std::size_t workers = 0) {
    auto [executor, spawner] = fiber::new_executor_and_spawner(workers);
    auto root = [](F& test, fiber::Spawner spawner, fiber::Executor& executor) -> fiber::Task<> {
        try {
            co_await test(spawner);
        } catch (const fiber::Cancelled&) {  // not a std::exception
            ADD_FAILURE() << "the test threw fiber::Cancelled";
        } catch (const std::exception& e) {
            ADD_FAILURE() << "the test threw: " << e.what();
        }
        executor.stop();
    };
    spawner.spawn(root(test, spawner, executor));
    executor.run();
}

/// run_test() for a test that relies on one thread's order: "after this
/// yield, the task I spawned is waiting". On several workers it may not be.
template <typename F>
void run_on_one_worker(F&& test) {
    run_test(std::forward<F>(test), 1);
}

inline std::span<const std::byte> bytes(const std::string& s) {
    return std::as_bytes(std::span(s.data(), s.size()));
}

/// Reads exactly n bytes, or fewer if the stream ends first.
inline fiber::Task<std::string> read_exactly(fiber::TcpStream& stream, std::size_t n) {
    std::string out(n, '\0');
    std::size_t got = 0;
    while (got < n) {
        auto rest = std::as_writable_bytes(std::span(out.data() + got, n - got));
        std::size_t r = co_await stream.read(rest);
        if (r == 0) break;
        got += r;
    }
    out.resize(got);
    co_return out;
}

inline fiber::Task<std::string> read_to_end(fiber::TcpStream& stream) {
    std::string all;
    char buffer[4096];
    while (std::size_t n = co_await stream.read(std::as_writable_bytes(std::span(buffer)))) {
        all.append(buffer, n);
    }
    co_return all;
}

/// A position-sensitive checksum (FNV-1a), fed piece by piece: a lost,
/// doubled or reordered byte changes it.
struct Checksum {
    std::uint64_t value = 14695981039346656037ull;
    std::uint64_t bytes = 0;
    void add(std::span<const std::byte> data) {
        for (std::byte b : data)
            value = (value ^ std::to_integer<std::uint64_t>(b)) * 1099511628211ull;
        bytes += data.size();
    }
};

/// `n` pseudo-random bytes, different for each seed.
inline std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
    std::vector<std::byte> out(n);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& b : out) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
        b = static_cast<std::byte>(x >> 56);
    }
    return out;
}

/// What serve_echo saw. The connections run on several workers: their
/// counts are atomic. The rest belongs to the accept loop, one task, which
/// may move between workers but never runs on two at once.
struct ServerStats {
    int accepted = 0;
    std::atomic<int> finished = 0;  // connections echoed until their client's end of stream
    std::atomic<int> failed = 0;    // connections ended by an error: that connection only
    int out_of_descriptors = 0;     // accepts that failed for want of a descriptor
    // Every stretch of time the server spent out of descriptors, summed:
    // how long, and how much CPU the whole process used meanwhile.
    double out_seconds = 0, out_cpu_seconds = 0;

    bool out_now = false;
    std::chrono::steady_clock::time_point out_since;
    double out_since_cpu = 0;
};

/// Echoes one connection until its client shuts down writing. An error
/// (a reset, say) ends this connection and nothing else.
inline fiber::Task<> echo_connection(fiber::TcpStream stream, ServerStats& stats) {
    try {
        std::byte buffer[4096];
        while (std::size_t n = co_await stream.read(buffer)) {
            co_await stream.write_all(std::span(buffer).first(n));
        }
        ++stats.finished;
    } catch (const std::system_error&) {
        ++stats.failed;
    }
}

inline bool out_of_descriptors(const std::system_error& e) {
    return e.code() == std::errc::too_many_files_open ||
           e.code() == std::errc::too_many_files_open_in_system;
}

/// An accept loop as an echo server writes it: each connection in a task
/// of its own. Out of descriptors, accept throws and the connection stays
/// queued; trying again at once would spin a core at 100 % until a
/// descriptor is freed, so the loop sleeps 10 ms first (Tokio's tutorial
/// and mini-redis back off too). Returns after `connections` accepts.
/// It owns the listener: on several workers it may still be accepting
/// while the task that started it ends, and a borrowed listener would be
/// destroyed under it.
inline fiber::Task<> serve_echo(fiber::TcpListener listener, fiber::Spawner spawner,
                                ServerStats& stats, int connections = -1) {
    using namespace std::chrono_literals;
    while (connections < 0 || stats.accepted < connections) {
        bool back_off = false;
        try {
            fiber::TcpStream stream = (co_await listener.accept()).stream;
            ++stats.accepted;
            if (stats.out_now) {  // a descriptor was freed: serving again
                stats.out_now = false;
                stats.out_seconds += std::chrono::duration<double>(
                                         std::chrono::steady_clock::now() - stats.out_since)
                                         .count();
                stats.out_cpu_seconds += fiber::common::process_cpu_seconds() - stats.out_since_cpu;
            }
            spawner.spawn(echo_connection(std::move(stream), stats));
        } catch (const std::system_error& e) {
            if (!out_of_descriptors(e)) throw;
            ++stats.out_of_descriptors;
            if (!stats.out_now) {
                stats.out_now = true;
                stats.out_since = std::chrono::steady_clock::now();
                stats.out_since_cpu = fiber::common::process_cpu_seconds();
            }
            back_off = true;  // no co_await inside a catch block
        }
        if (back_off) co_await fiber::sleep_for(10ms);
    }
}

/// What echo clients saw: round trips whose echo matched, and failures.
struct ClientStats {  // atomic: the clients run on several workers
    std::atomic<int> good = 0;
    std::atomic<int> bad = 0;     // an echo that differed from what was sent
    std::atomic<int> errors = 0;  // exceptions
};

/// One client: connects, sends `rounds` messages of 1 to `max_size` bytes
/// (different for each id and round), checks every echo by checksum.
inline fiber::Task<> echo_client(fiber::SocketAddress to, int id, int rounds, std::size_t max_size,
                                 ClientStats& stats) {
    try {
        fiber::TcpStream stream = co_await fiber::TcpStream::connect(to);
        for (int round = 0; round < rounds; ++round) {
            const std::size_t size =
                1 + (static_cast<std::size_t>(id) * 97 + round * 31) % max_size;
            auto message = pattern(size, static_cast<std::uint64_t>(id) * 1000 + round);
            co_await stream.write_all(message);
            std::string back = co_await read_exactly(stream, message.size());
            Checksum want, got;
            want.add(message);
            got.add(bytes(back));
            (want.value == got.value && want.bytes == got.bytes ? stats.good : stats.bad) += 1;
        }
        stream.shutdown_write();
        if (!(co_await read_to_end(stream)).empty()) ++stats.bad;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "client " << id << ": " << e.what();
        ++stats.errors;
    }
}

/// True if the error's message contains `text` (the call or the address).
inline bool mentions(const std::system_error& e, const std::string& text) {
    return std::string(e.what()).find(text) != std::string::npos;
}
