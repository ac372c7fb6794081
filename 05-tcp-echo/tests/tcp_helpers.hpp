// Helpers for the TCP tests: run a test task with a Spawner, wait for
// other tasks to finish, read exactly n bytes, and checksum a stream.
#pragma once

#include <gtest/gtest.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "fiber/executor.hpp"
#include "fiber/tcp.hpp"
#include "fiber/waker.hpp"

/// Lets one task wait (`co_await countdown.wait()`) until `n` calls of
/// done(). Every task of a test runs on the one executor thread, so a plain
/// int is enough: no other thread runs between the check in await_ready
/// and the waker's publication.
class Countdown {
public:
    explicit Countdown(int n) : left_(n) {}
    void done() {
        if (--left_ == 0 && waiter_) std::move(waiter_).wake();
    }
    auto wait() {
        struct Awaiter {
            Countdown* countdown;
            bool await_ready() const noexcept { return countdown->left_ <= 0; }
            void await_suspend(std::coroutine_handle<> self) {
                countdown->waiter_ = fiber::current_waker(self);
            }
            void await_resume() const noexcept {}
        };
        return Awaiter{this};
    }

private:
    int left_;
    fiber::Waker waiter_;
};

/// Runs `test(spawner)` on a fresh executor until it returns, then stops
/// the executor: tasks still waiting (an accept loop) are destroyed. An
/// exception that escapes the test fails it.
template <typename F>
void run_test(F&& test) {
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    auto root = [](F& test, fiber::Spawner spawner, fiber::Executor& executor) -> fiber::Task<> {
        try {
            co_await test(spawner);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "the test threw: " << e.what();
        }
        executor.stop();
    };
    spawner.spawn(root(test, spawner, executor));
    executor.run();
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
