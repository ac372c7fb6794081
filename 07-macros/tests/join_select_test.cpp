// join, select and timeout: results, exceptions, and cancellation of the
// children that are no longer needed, which have unwound (destructors run,
// timers and I/O waits gone) before join or select returns.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>

#include "common/testing/fail_alloc.hpp"
#include "common/testing/fd_count.hpp"
#include "common/testing/live_counter.hpp"
#include "fiber/cancel.hpp"
#include "fiber/join.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/select.hpp"
#include "fiber/sleep.hpp"
#include "fiber/tcp.hpp"
#include "fiber/timeout.hpp"
#include "fiber/yield.hpp"
#include "stream_pair.hpp"
#include "tcp_helpers.hpp"

using namespace std::chrono_literals;
using fiber::Cancelled;
using fiber::Task;
using fiber::TcpListener;
using fiber::TcpStream;
using fiber::common::LiveCounter;
using Clock = std::chrono::steady_clock;

namespace {

Task<int> value(int v) { co_return v; }

Task<int> value_later(int v) {
    co_await fiber::sleep_for(2ms);
    co_return v;
}

Task<> nothing() { co_return; }

Task<int> fails_after_a_yield() {
    co_await fiber::yield_now();
    throw std::runtime_error("boom");
}

// Sets `unwound` when its frame goes: the destructor of a cancelled task.
struct Flag {
    explicit Flag(std::atomic<int>& c) : count(c) {}
    ~Flag() { ++count; }
    std::atomic<int>& count;
    LiveCounter alive;
};

Task<int> sleep_forever(std::atomic<int>& unwound) {
    Flag flag{unwound};
    co_await fiber::sleep_for(1h);
    ADD_FAILURE() << "a loser's sleep ran to its end";
    co_return -1;
}

Task<std::size_t> read_forever(TcpStream& stream, std::atomic<int>& unwound) {
    Flag flag{unwound};
    std::byte buffer[16];
    co_return co_await stream.read(buffer);
}

Task<int> accept_forever(TcpListener& listener, std::atomic<int>& unwound) {
    Flag flag{unwound};
    (void)co_await listener.accept();
    ADD_FAILURE() << "nobody connected";
    co_return -1;
}

}  // namespace

TEST(Join, GivesEveryValueInOrder) {
    run_test([](fiber::Spawner) -> Task<> {
        auto [a, b, c] = co_await fiber::join(value_later(1), value(2), value_later(3));
        EXPECT_EQ(a, 1);
        EXPECT_EQ(b, 2);
        EXPECT_EQ(c, 3);
    });
}

TEST(Join, AVoidTaskGivesMonostate) {
    run_test([](fiber::Spawner) -> Task<> {
        auto result = co_await fiber::join(nothing(), value(5));
        static_assert(std::is_same_v<decltype(result), std::tuple<std::monostate, int>>);
        EXPECT_EQ(std::get<1>(result), 5);
    });
}

TEST(Join, ChildrenRunConcurrently) {
    run_test([](fiber::Spawner) -> Task<> {
        // Each waits for the other: only concurrent children get through.
        std::atomic<int> arrived = 0;
        auto meet = [](std::atomic<int>& arrived) -> Task<int> {
            ++arrived;
            while (arrived.load() < 2) co_await fiber::yield_now();
            co_return 1;
        };
        auto [a, b] = co_await fiber::join(meet(arrived), meet(arrived));
        EXPECT_EQ(a + b, 2);
    });
}

TEST(Join, AnExceptionCancelsTheOthersAndIsRethrownAfterThem) {
    const long before = LiveCounter::live();
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        StreamPair pair = co_await connected_pair();
        try {
            (void)co_await fiber::join(sleep_forever(unwound), fails_after_a_yield(),
                                       read_forever(pair.server, unwound));
            ADD_FAILURE() << "join returned";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "boom");
            EXPECT_EQ(unwound.load(), 2);  // both have unwound already
        }
    });
    EXPECT_EQ(LiveCounter::live(), before);
}

TEST(Select, TheFirstToFinishWinsAndTheLosersUnwindFirst) {
    const long before = LiveCounter::live();
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        StreamPair pair = co_await connected_pair();
        auto listener = TcpListener::bind("127.0.0.1:0");
        auto result = co_await fiber::select(sleep_forever(unwound), value_later(7),
                                             read_forever(pair.server, unwound),
                                             accept_forever(listener, unwound));
        EXPECT_EQ(result.index(), 1u);
        EXPECT_EQ(std::get<1>(result), 7);
        EXPECT_EQ(unwound.load(), 3);  // every loser's destructors ran
        // Their waits are gone: the stream and the listener work again.
        co_await pair.client.write_all(bytes("hi"));
        EXPECT_EQ(co_await read_exactly(pair.server, 2), "hi");
        TcpStream client = co_await TcpStream::connect(listener.local_address());
        TcpStream server = (co_await listener.accept()).stream;
        EXPECT_NE(server.handle(), fiber::common::invalid_handle);
    });
    EXPECT_EQ(LiveCounter::live(), before);
}

TEST(Select, LosersAreCancelledPromptly) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        StreamPair pair = co_await connected_pair();
        auto winner = []() -> Task<Clock::time_point> {
            co_await fiber::sleep_for(5ms);
            co_return Clock::now();
        };
        auto result = co_await fiber::select(winner(), sleep_forever(unwound),
                                             read_forever(pair.server, unwound));
        const auto lag = Clock::now() - std::get<0>(result);
        EXPECT_EQ(unwound.load(), 2);
        // A millisecond on an idle machine; generous for sanitizers and CI.
        EXPECT_LT(lag, 200ms);
    });
}

TEST(Select, AWinnersExceptionIsRethrown) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        EXPECT_THROW((void)co_await fiber::select(sleep_forever(unwound), fails_after_a_yield()),
                     std::runtime_error);
        EXPECT_EQ(unwound.load(), 1);
    });
}

TEST(Select, SameTypesAreToldApartByIndex) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        auto result = co_await fiber::select(sleep_forever(unwound), value(9));
        EXPECT_EQ(result.index(), 1u);
        EXPECT_EQ(std::get<1>(result), 9);
    });
}

// Both children finish at the same moment, on two workers when there are
// several: exactly one wins, the other runs to its end as a loser.
TEST(Select, TwoChildrenFinishingAtOnceGiveOneWinner) {
    run_test([](fiber::Spawner) -> Task<> {
        int wins[2] = {0, 0};
        for (int i = 0; i < 2000; ++i) {
            std::atomic<int> arrived = 0;
            std::atomic<int> finished = 0;
            auto racer = [](std::atomic<int>& arrived, std::atomic<int>& finished) -> Task<int> {
                ++arrived;
                while (arrived.load() < 2) co_await fiber::yield_now();
                ++finished;
                co_return 1;
            };
            auto result =
                co_await fiber::select(racer(arrived, finished), racer(arrived, finished));
            ++wins[result.index()];
            EXPECT_EQ(finished.load(), 2);  // the loser finished too, before select returned
        }
        EXPECT_EQ(wins[0] + wins[1], 2000);
    });
}

TEST(Select, TenThousandSelectsLeakNoFrameAndNoDescriptor) {
    const long before = LiveCounter::live();
    const auto fds_before = fiber::common::open_descriptors();
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        StreamPair pair = co_await connected_pair();
        for (int i = 0; i < 10000; ++i) {
            auto result = co_await fiber::select(read_forever(pair.server, unwound),
                                                 sleep_forever(unwound), value(i));
            EXPECT_EQ(std::get<2>(result), i);
        }
        EXPECT_EQ(unwound.load(), 20000);
    });
    EXPECT_EQ(LiveCounter::live(), before);
    const auto fds_after = fiber::common::open_descriptors();
    if (fds_before && fds_after) {
        EXPECT_EQ(*fds_after, *fds_before);
    }
}

TEST(Timeout, GivesTheValueInTime) {
    run_test([](fiber::Spawner) -> Task<> {
        EXPECT_EQ(co_await fiber::timeout(10s, value_later(3)), 3);
        co_await fiber::timeout(10s, nothing());
    });
}

TEST(Timeout, ThrowsTimedOutAndCancelsTheTask) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        const auto t0 = Clock::now();
        EXPECT_THROW((void)co_await fiber::timeout(20ms, sleep_forever(unwound)), fiber::TimedOut);
        EXPECT_GE(Clock::now() - t0, 20ms);
        EXPECT_EQ(unwound.load(), 1);
    });
}

TEST(Timeout, AnyDurationTypeTimesOut) {
    // Narrow integer limits used to saturate to "never" about half the
    // time (the room left on the clock wrapped in their type), and the
    // timeout never came.
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        const std::chrono::duration<std::int32_t, std::nano> nanos = 2ms;
        EXPECT_THROW((void)co_await fiber::timeout(nanos, sleep_forever(unwound)), fiber::TimedOut);
        const std::chrono::duration<std::int16_t, std::milli> millis(2);
        EXPECT_THROW((void)co_await fiber::timeout(millis, sleep_forever(unwound)),
                     fiber::TimedOut);
        const std::chrono::duration<float, std::milli> floating(2.0f);
        EXPECT_THROW((void)co_await fiber::timeout(floating, sleep_forever(unwound)),
                     fiber::TimedOut);
        EXPECT_EQ(unwound.load(), 3);
    });
}

TEST(Timeout, ATimedOutReadLeavesNoWaitBehind) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        StreamPair pair = co_await connected_pair();
        EXPECT_THROW((void)co_await fiber::timeout(5ms, read_forever(pair.server, unwound)),
                     fiber::TimedOut);
        co_await pair.client.write_all(bytes("ok"));
        EXPECT_EQ(co_await fiber::timeout(10s, read_exactly(pair.server, 2)), "ok");
    });
}

namespace {

// Three levels: a spawned task joins a select, which waits on a read and a
// sleep, beside a join of two sleeps.
Task<int> level3(TcpStream& stream, std::atomic<int>& unwound) {
    Flag flag{unwound};
    auto r = co_await fiber::select(read_forever(stream, unwound), sleep_forever(unwound));
    co_return static_cast<int>(r.index());
}

Task<int> level2(TcpStream& stream, std::atomic<int>& unwound) {
    Flag flag{unwound};
    auto [a, b] = co_await fiber::join(level3(stream, unwound), sleep_forever(unwound));
    co_return a + b;
}

Task<int> level1(TcpStream& stream, std::atomic<int>& unwound, std::atomic<bool>& started) {
    Flag flag{unwound};
    started = true;
    auto [a, b] = co_await fiber::join(level2(stream, unwound), sleep_forever(unwound));
    co_return a + b;
}

}  // namespace

TEST(Cancel, AStopReachesATaskNestedThreeLevelsDeep) {
    const long before = LiveCounter::live();
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        std::atomic<bool> started = false;
        StreamPair pair = co_await connected_pair();
        auto handle = fiber::spawn(level1(pair.server, unwound, started));
        while (!started.load()) co_await fiber::yield_now();
        for (int i = 0; i < 10; ++i) co_await fiber::yield_now();
        handle.abort();
        EXPECT_THROW(co_await handle, Cancelled);
        // level1..3, two sleeps joined, and the read and sleep selected.
        EXPECT_EQ(unwound.load(), 7);
    });
    EXPECT_EQ(LiveCounter::live(), before);
}

TEST(Cancel, ASelectInsideATimeoutIsCancelledWithIt) {
    run_test([](fiber::Spawner) -> Task<> {
        std::atomic<int> unwound = 0;
        StreamPair pair = co_await connected_pair();
        EXPECT_THROW((void)co_await fiber::timeout(5ms, level3(pair.server, unwound)),
                     fiber::TimedOut);
        EXPECT_EQ(unwound.load(), 3);
    });
}

// The most common server loop: log an error and go on. Cancelled is not a
// std::exception, so such a loop lets it through and ends when cancelled;
// were it one, every accept after the stop would throw it again at once,
// and the loop would spin for ever (here: until it gives up on its own).
TEST(Timeout, ALoopThatCatchesStdExceptionIsStillCancelled) {
    run_test([](fiber::Spawner) -> Task<> {
        auto listener = TcpListener::bind("127.0.0.1:0");
        int swallowed = 0;
        auto accept_loop = [](TcpListener& listener, int& swallowed) -> Task<> {
            for (;;) {
                try {
                    (void)co_await listener.accept();
                } catch (const std::exception&) {
                    if (++swallowed == 1000) co_return;  // it would spin for ever
                }
            }
        };
        EXPECT_THROW((void)co_await fiber::timeout(20ms, accept_loop(listener, swallowed)),
                     fiber::TimedOut);
        EXPECT_EQ(swallowed, 0);
    });
}

TEST(Cancel, CancelledIsNotAStdException) {
    static_assert(!std::is_base_of_v<std::exception, Cancelled>);
    EXPECT_STREQ(Cancelled().what(), "fiber: the task was cancelled");
}

namespace {

// A loser that fails while it unwinds: its own error, not Cancelled.
Task<int> fails_when_cancelled() {
    try {
        co_await fiber::sleep_for(1h);
    } catch (const Cancelled&) {
        throw std::runtime_error("cleanup failed");
    }
    co_return -1;
}

}  // namespace

TEST(Select, ALosersOwnErrorIsReportedNotDropped) {
    testing::internal::CaptureStderr();
    run_test([](fiber::Spawner) -> Task<> {
        auto result = co_await fiber::select(fails_when_cancelled(), value_later(1));
        EXPECT_EQ(result.index(), 1u);
    });
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("fiber: a select loser failed: cleanup failed"), std::string::npos) << err;
}

TEST(Join, ASecondFailureIsReportedNotDropped) {
    testing::internal::CaptureStderr();
    run_test([](fiber::Spawner) -> Task<> {
        EXPECT_THROW((void)co_await fiber::join(fails_when_cancelled(), fails_after_a_yield()),
                     std::runtime_error);
    });
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("fiber: a join child failed after another: cleanup failed"),
              std::string::npos)
        << err;
}

namespace {

Task<int> counted(int v) {
    LiveCounter alive;
    co_await fiber::yield_now();
    co_return v;
}

Task<int> counted_failure() {
    LiveCounter alive;
    co_await fiber::yield_now();
    throw std::runtime_error("boom");
}

// Runs `op()` with every allocation on this thread failing after the
// first n, for n = 0, 1, 2, ... until a run meets no failure. Each run
// ends with `expected` or with std::bad_alloc, never with a terminate (a
// stop request made inside a noexcept function must not allocate), and
// leaves no frame behind. One worker: every frame runs on this thread.
template <typename Op>
void fails_cleanly(Op op, int expected) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "operator new cannot be replaced here (ThreadSanitizer)";
    }
    run_on_one_worker([&](fiber::Spawner) -> Task<> {
        EXPECT_EQ(co_await op(), expected);  // warm-up: the reactor, the timer heap
        bool succeeded = false;
        for (std::size_t n = 0; n < 1000 && !succeeded; ++n) {
            const long before = LiveCounter::live();
            int outcome = 0;
            bool bad_alloc = false;
            try {
                fiber::common::FailAllocations fail(n);
                outcome = co_await op();
                succeeded = !fiber::common::FailAllocations::failed();
            } catch (const std::bad_alloc&) {
                bad_alloc = true;
            }
            EXPECT_TRUE(bad_alloc || outcome == expected) << n;
            EXPECT_EQ(LiveCounter::live(), before) << n;
        }
        EXPECT_TRUE(succeeded);
    });
}

}  // namespace

TEST(Join, RunningOutOfMemoryThrowsBadAllocAndLeaksNothing) {
    fails_cleanly(
        []() -> Task<int> {
            auto [a, b] = co_await fiber::join(counted(1), counted(2));
            co_return a + b;
        },
        3);
}

TEST(Join, AFailureUnderFailingAllocationThrowsAndLeaksNothing) {
    fails_cleanly(
        []() -> Task<int> {
            try {
                (void)co_await fiber::join(counted(1), counted_failure());
            } catch (const std::runtime_error&) {
                co_return -1;  // the failure cancelled the other: a stop request
            }
            co_return 0;
        },
        -1);
}

TEST(Select, RunningOutOfMemoryThrowsBadAllocAndLeaksNothing) {
    fails_cleanly(
        []() -> Task<int> {
            std::atomic<int> unwound = 0;
            auto result = co_await fiber::select(sleep_forever(unwound), counted(4));
            co_return std::get<1>(result);
        },
        4);
}

TEST(Timeout, RunningOutOfMemoryThrowsBadAllocAndLeaksNothing) {
    fails_cleanly([]() -> Task<int> { co_return co_await fiber::timeout(1h, counted(6)); }, 6);
    fails_cleanly(
        []() -> Task<int> {
            std::atomic<int> unwound = 0;
            try {
                (void)co_await fiber::timeout(1ms, sleep_forever(unwound));
            } catch (const fiber::TimedOut&) {
                co_return -2;
            }
            co_return 0;
        },
        -2);
}

// join, select and timeout take any awaitable, not only a Task: a sleep,
// a JoinHandle the caller keeps (awaited where it is), or one handed over.
TEST(Timeout, TakesAnyAwaitableNotOnlyATask) {
    run_test([](fiber::Spawner) -> Task<> {
        EXPECT_THROW(co_await fiber::timeout(5ms, fiber::sleep_for(1h)), fiber::TimedOut);
        co_await fiber::timeout(1h, fiber::sleep_for(1ms));
        auto handle = fiber::spawn(value_later(4));
        auto [a, b] = co_await fiber::join(handle, fiber::sleep_for(1ms));
        static_assert(std::is_same_v<decltype(b), std::monostate>);
        EXPECT_EQ(a, 4);
        auto first = co_await fiber::select(fiber::sleep_for(1h), fiber::spawn(value(3)));
        EXPECT_EQ(first.index(), 1u);
        EXPECT_EQ(std::get<1>(first), 3);
    });
}
