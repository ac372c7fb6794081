// The stop state alone: callbacks run once, at the request or at once if it
// came first; a callback destroyed while another thread runs it waits for
// it to return, and never hangs (std::stop_callback's destructor can, on
// mingw: see fiber/stop_state.hpp); the user's std::stop_token follows.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <stop_token>
#include <thread>

#include "common/testing/fail_alloc.hpp"
#include "fiber/stop_state.hpp"

using fiber::detail::StopCallback;
using fiber::detail::StopRef;

namespace {

struct Count {
    std::atomic<int>* runs;
    void operator()() const noexcept { runs->fetch_add(1); }
};

}  // namespace

TEST(StopState, ARequestRunsEachCallbackOnce) {
    StopRef stop = StopRef::make();
    std::atomic<int> runs{0};
    StopCallback a(stop.get(), Count{&runs});
    StopCallback b(stop.get(), Count{&runs});
    {
        StopCallback gone(stop.get(), Count{&runs});  // destroyed first: never runs
    }
    EXPECT_FALSE(stop.get()->stop_requested());
    stop.request_stop();
    stop.request_stop();  // the second does nothing
    EXPECT_TRUE(stop.get()->stop_requested());
    EXPECT_EQ(runs.load(), 2);
}

TEST(StopState, ACallbackMadeAfterTheRequestRunsAtOnce) {
    StopRef stop = StopRef::make();
    stop.request_stop();
    std::atomic<int> runs{0};
    StopCallback late(stop.get(), Count{&runs});
    EXPECT_EQ(runs.load(), 1);
    StopCallback none(nullptr, Count{&runs});  // no state: nothing can stop it
    EXPECT_EQ(runs.load(), 1);
}

TEST(StopState, TheUserTokenIsRequestedToo) {
    StopRef stop = StopRef::make();
    std::stop_token before = stop.get()->token();
    EXPECT_TRUE(before.stop_possible());
    EXPECT_FALSE(before.stop_requested());
    stop.request_stop();
    EXPECT_TRUE(before.stop_requested());
    EXPECT_TRUE(stop.get()->token().stop_requested());  // made after: requested all the same
}

// The race std::stop_callback's destructor loses on mingw: the awaiter's
// callback is destroyed on one thread while the request runs it on another.
// Each round checks that the destructor returned only after the callback.
TEST(StopState, DestroyingACallbackWhileAnotherThreadRunsItWaitsForIt) {
    constexpr int kRounds = 5000;  // about 0.1 s; under wine, std's hung within ~1000
    std::atomic<int> round{-1};    // the round whose request may start
    std::atomic<int> requested{-1};
    std::optional<StopRef> stop;
    std::thread requester([&] {
        for (int i = 0; i < kRounds; ++i) {
            while (round.load() != i) std::this_thread::yield();
            stop->request_stop();
            requested.store(i);
        }
    });
    for (int i = 0; i < kRounds; ++i) {
        stop.emplace(StopRef::make());
        std::atomic<bool> running{false};
        std::atomic<bool> finished{false};
        auto slow = [&, spin = i % 64]() noexcept {
            running.store(true);
            for (int k = 0; k < spin * 20; ++k) finished.store(false);
            finished.store(true);
        };
        {
            StopCallback callback(stop->get(), slow);
            round.store(i);
            while (!running.load()) std::this_thread::yield();  // it always runs
        }  // waits for a callback still running on the requester
        EXPECT_EQ(running.load(), finished.load()) << "round " << i;
        while (requested.load() != i) std::this_thread::yield();
    }
    requester.join();
}

// A request is made inside noexcept functions (abort(), a select's win, a
// join's failure): it must not allocate, or running out of memory there
// would end the process. The user's token, if made, was allocated before.
TEST(StopState, ARequestAllocatesNothing) {
    if (!fiber::common::FailAllocations::supported()) {
        GTEST_SKIP() << "operator new cannot be replaced here (ThreadSanitizer)";
    }
    StopRef plain = StopRef::make();
    StopRef with_token = StopRef::make();
    const std::stop_token token = with_token.get()->token();
    std::atomic<int> runs{0};
    StopCallback a(plain.get(), Count{&runs});
    StopCallback b(with_token.get(), Count{&runs});
    bool failed = false;
    {
        fiber::common::FailAllocations none;
        plain.request_stop();
        with_token.request_stop();
        failed = fiber::common::FailAllocations::failed();
    }
    EXPECT_FALSE(failed);
    EXPECT_EQ(runs.load(), 2);
    EXPECT_TRUE(token.stop_requested());
}
