// Cancellation: a stop request wakes a task waiting on a timer, a read or
// an accept, which then ends with fiber::Cancelled; the wait is removed,
// and the socket is usable again. Stop requests race normal completion.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>

#include "common/testing/live_counter.hpp"
#include "fiber/cancel.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/sleep.hpp"
#include "fiber/tcp.hpp"
#include "fiber/yield.hpp"
#include "stream_pair.hpp"
#include "tcp_helpers.hpp"

using namespace std::chrono_literals;
using fiber::Cancelled;
using fiber::Task;
using fiber::TcpListener;
using fiber::TcpStream;
using Clock = std::chrono::steady_clock;

namespace {

// Yields until `flag` is set: for a task on another worker to get going.
Task<> until(const std::atomic<bool>& flag) {
    while (!flag.load()) co_await fiber::yield_now();
}

Task<> sleep_long(std::atomic<bool>& started) {
    fiber::common::LiveCounter alive;
    started = true;
    co_await fiber::sleep_for(1h);
    ADD_FAILURE() << "a cancelled sleep went on";
}

}  // namespace

TEST(Cancel, AbortEndsASleepWithCancelled) {
    const long before = fiber::common::LiveCounter::live();
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<bool> started = false;
        auto handle = fiber::spawn(sleep_long(started));
        co_await until(started);
        co_await fiber::yield_now();  // most likely asleep now; either way it must end
        const auto t0 = Clock::now();
        handle.abort();
        EXPECT_THROW(co_await handle, Cancelled);
        EXPECT_LT(Clock::now() - t0, 5s);
    });
    EXPECT_EQ(fiber::common::LiveCounter::live(), before);  // its frame is gone
}

TEST(Cancel, StopRequestedBeforeTheSleepEndsItAtOnce) {
    run_test([](fiber::Spawner) -> Task<> {
        auto handle = fiber::spawn([]() -> Task<int> {
            while (!fiber::this_task::stop_requested()) co_await fiber::yield_now();
            co_await fiber::sleep_for(1h);  // never suspends: stop came first
            co_return 1;
        }());
        handle.abort();
        EXPECT_THROW(co_await handle, Cancelled);
    });
}

TEST(Cancel, AbortEndsAReadAndLeavesTheStreamUsable) {
    run_test([](fiber::Spawner) -> Task<> {
        StreamPair pair = co_await connected_pair();
        std::atomic<bool> started = false;
        auto reader = [](TcpStream& s, std::atomic<bool>& started) -> Task<std::size_t> {
            std::byte buffer[16];
            started = true;
            co_return co_await s.read(buffer);
        };
        auto handle = fiber::spawn(reader(pair.server, started));
        co_await until(started);
        co_await fiber::yield_now();
        handle.abort();
        EXPECT_THROW(co_await handle, Cancelled);
        // The cancelled read removed its own registration: a new read waits
        // and gets the data.
        co_await pair.client.write_all(bytes("hello"));
        EXPECT_EQ(co_await read_exactly(pair.server, 5), "hello");
    });
}

TEST(Cancel, AbortEndsAnAccept) {
    run_test([](fiber::Spawner) -> Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        std::atomic<bool> started = false;
        auto acceptor = [](TcpListener& l, std::atomic<bool>& started) -> Task<> {
            started = true;
            (void)co_await l.accept();
            ADD_FAILURE() << "nobody connected";
        };
        auto handle = fiber::spawn(acceptor(listener, started));
        co_await until(started);
        co_await fiber::yield_now();
        handle.abort();
        EXPECT_THROW(co_await handle, Cancelled);
        // The listener still accepts.
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        TcpStream server = (co_await listener.accept()).stream;
        EXPECT_NE(server.handle(), fiber::common::invalid_handle);
        EXPECT_NE(client.handle(), fiber::common::invalid_handle);
    });
}

TEST(Cancel, ATaskThatNeverSuspendsAgainSimplyFinishes) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<bool> go = false;
        auto handle = fiber::spawn([](std::atomic<bool>& go) -> Task<int> {
            while (!go.load()) {
            }  // spins: never looks at its token
            co_return 7;
        }(go));
        handle.abort();
        go = true;
        EXPECT_EQ(co_await handle, 7);
    });
}

TEST(Cancel, TheTaskSeesItsToken) {
    run_test([](fiber::Spawner) -> Task<> {
        EXPECT_FALSE(fiber::this_task::stop_token().stop_possible());  // a Spawner's task
        auto handle = fiber::spawn(
            []() -> Task<bool> { co_return fiber::this_task::stop_token().stop_possible(); }());
        EXPECT_TRUE(co_await handle);
    });
    EXPECT_FALSE(fiber::this_task::stop_requested());  // outside any task
}

// The stop request races the timer and the task's own progress: whichever
// wins, the task ends once, with its value or with Cancelled, and nothing
// leaks or hangs. Run under TSan too.
TEST(Cancel, AbortRacingATimerEndsTheTaskOnce) {
    const long before = fiber::common::LiveCounter::live();
    run_test([](fiber::Spawner) -> Task<> {
        int values = 0, cancelled = 0;
        for (int i = 0; i < 500; ++i) {
            auto handle = fiber::spawn([]() -> Task<int> {
                fiber::common::LiveCounter alive;
                co_await fiber::sleep_for(std::chrono::microseconds(50));
                co_return 1;
            }());
            for (int k = 0; k < i % 4; ++k) co_await fiber::yield_now();
            handle.abort();
            try {
                values += co_await handle;
            } catch (const Cancelled&) {
                ++cancelled;
            }
        }
        EXPECT_EQ(values + cancelled, 500);
    });
    EXPECT_EQ(fiber::common::LiveCounter::live(), before);
}

// The same against a read whose data arrives at the moment of the abort.
TEST(Cancel, AbortRacingAReadEndsTheTaskOnce) {
    run_test([](fiber::Spawner) -> Task<> {
        StreamPair pair = co_await connected_pair();
        int got = 0, cancelled = 0;
        for (int i = 0; i < 300; ++i) {
            auto handle = fiber::spawn([](TcpStream& s) -> Task<std::size_t> {
                std::byte buffer[1];
                co_return co_await s.read(buffer);
            }(pair.server));
            if (i % 2) co_await fiber::yield_now();
            co_await pair.client.write_all(bytes("x"));
            handle.abort();
            bool was_cancelled = false;
            try {
                got += static_cast<int>(co_await handle);
            } catch (const Cancelled&) {
                was_cancelled = true;
            }
            if (was_cancelled) {
                ++cancelled;
                // The byte is still there for the next read.
                EXPECT_EQ(co_await read_exactly(pair.server, 1), "x");
                ++got;
            }
        }
        EXPECT_EQ(got, 300);
        (void)cancelled;
    });
}
