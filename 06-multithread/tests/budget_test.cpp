// The cooperative budget: a task whose operations never have to wait still
// lets the others run. A reader of a pipe that a thread keeps full never
// finds it empty, so none of its reads suspends; a 50 ms timer on the same
// executor must fire while it reads. Without the budget it fires only once
// the reader stops. There is one such reader per worker, so that every
// worker is busy with one. The tests count operations, not time.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <thread>
#include <vector>

#include "common/os.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"

#ifndef _WIN32
#include <unistd.h>
#endif

namespace budget_test {

using namespace std::chrono_literals;

// Far more reads than any machine does in 50 ms (each is a system call):
// a limit that ends the test when it fails, not a measure of speed.
constexpr long kReadLimit = 1'000'000;

// Pipes that a thread of its own keeps full until it is destroyed: their
// readers never find them empty. The read ends go to AsyncFds that must
// outlive the Feeder: a write into a pipe whose reader is gone raises
// SIGPIPE.
class Feeder {
public:
    explicit Feeder(std::size_t pipes) {
        for (std::size_t i = 0; i < pipes; ++i) {
            auto [reader, writer] = fiber::common::make_pipe();
            fiber::common::set_nonblocking(writer);
            readers.push_back(reader);
            writers_.push_back(writer);
        }
        fill();  // full before the first read
        thread_ = std::thread([this] {
            while (!stop_) {
                if (!fill()) std::this_thread::sleep_for(100us);
            }
        });
    }
    ~Feeder() {
        stop_ = true;
        thread_.join();
        for (auto writer : writers_) fiber::common::close_handle(writer);
    }
    Feeder(const Feeder&) = delete;
    Feeder& operator=(const Feeder&) = delete;

    std::vector<fiber::common::native_handle> readers;

private:
    // Fills every pipe up; false if none had room.
    bool fill() {
        static const std::array<char, 4096> chunk{};
        bool wrote = false;
        for (auto writer : writers_) {
#ifdef _WIN32
            while (::send(writer, chunk.data(), static_cast<int>(chunk.size()), 0) > 0) {
#else
            while (::write(writer, chunk.data(), chunk.size()) > 0) {
#endif
                wrote = true;
            }
        }
        return wrote;
    }

    std::vector<fiber::common::native_handle> writers_;
    std::atomic<bool> stop_ = false;
    std::thread thread_;
};

// Reads one byte at a time until `fired`, or kReadLimit reads. The pipe is
// never empty, so no read waits.
fiber::Task<> hot_reader(fiber::common::native_handle h, std::optional<fiber::AsyncFd>& in,
                         const std::atomic<bool>& fired, long& reads) {
    in.emplace(h);
    std::byte byte[1];
    while (!fired && reads < kReadLimit) {
        if (co_await in->read(byte) != 1) break;
        ++reads;
    }
}

fiber::Task<> fire_after(std::chrono::milliseconds delay, std::atomic<bool>& fired) {
    co_await fiber::sleep_for(delay);
    fired = true;
}

}  // namespace budget_test

TEST(Budget, TimerFiresWhileAHotReaderNeverBlocks) {
    using namespace budget_test;
    std::atomic<bool> fired = false;
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    const std::size_t n = executor.workers();  // a reader for each
    std::vector<long> reads(n, 0);
    std::vector<std::optional<fiber::AsyncFd>> ins(n);  // outlive the feeder: see Feeder
    {
        Feeder feeder(n);
        spawner.spawn(fire_after(50ms, fired));  // first: its timer is set before the reads
        for (std::size_t i = 0; i < n; ++i) {
            spawner.spawn(hot_reader(feeder.readers[i], ins[i], fired, reads[i]));
        }
        executor.run();
    }
    EXPECT_TRUE(fired);
    for (std::size_t i = 0; i < n; ++i) {
        EXPECT_LT(reads[i], kReadLimit)
            << "reader " << i << " did all its reads before the 50 ms timer fired";
    }
}

TEST(Budget, TimerFiresWhileATaskSleepsForZero) {
    using namespace budget_test;
    std::atomic<bool> fired = false;
    constexpr long kLimit = 10'000'000;  // a zero sleep costs a clock read: far more than 1 ms
    auto sleeper = [](const std::atomic<bool>& fired, long& sleeps) -> fiber::Task<> {
        while (!fired && sleeps < kLimit) {
            co_await fiber::sleep_for(0ms);  // due at once: never waits
            ++sleeps;
        }
    };
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    std::vector<long> sleeps(executor.workers(), 0);  // a sleeper for each worker
    spawner.spawn(fire_after(1ms, fired));
    for (long& count : sleeps) spawner.spawn(sleeper(fired, count));
    executor.run();
    EXPECT_TRUE(fired);
    for (long count : sleeps) {
        EXPECT_LT(count, kLimit) << "a sleeper did all its sleeps before the 1 ms timer fired";
    }
}
