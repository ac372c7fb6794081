// Blocks for frames and cells, recycled on each thread: reused where they
// were freed, bounded, given back when the thread exits; a spawn-and-await
// loop on one worker then allocates nothing at all.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "common/testing/fail_alloc.hpp"
#include "fiber/frame_pool.hpp"
#include "fiber/join_handle.hpp"
#include "tcp_helpers.hpp"

using fiber::detail::allocate_block;
using fiber::detail::blocks_recycled;
using fiber::detail::free_block;

namespace {

bool skip_reason(std::string& why) {
    if (!blocks_recycled()) {
        why = "blocks go straight to malloc here (a sanitizer, or mingw-w64)";
        return true;
    }
    if (!fiber::common::FailAllocations::supported()) {
        why = "operator new cannot be replaced here";
        return true;
    }
    return false;
}

fiber::Task<> empty() { co_return; }

}  // namespace

TEST(FramePool, ABlockFreedOnAThreadIsReusedThere) {
    std::string why;
    if (skip_reason(why)) GTEST_SKIP() << why;
    void* a = allocate_block(80);
    free_block(a, 80);
    void* b = allocate_block(76);  // the same step (73 to 88 bytes)
    EXPECT_EQ(a, b);
    free_block(b, 76);
}

TEST(FramePool, ABlockFreedOnAnotherThreadStaysWithThatThread) {
    std::string why;
    if (skip_reason(why)) GTEST_SKIP() << why;
    void* block = allocate_block(96);
    void* again = nullptr;
    std::thread other([&] {
        free_block(block, 96);       // kept by this thread...
        again = allocate_block(96);  // ...and taken back by it
        free_block(again, 96);       // kept until the thread exits
    });
    other.join();
    EXPECT_EQ(again, block);
}

TEST(FramePool, AThreadKeepsABoundedNumberAndGivesThemBackWhenItExits) {
    std::string why;
    if (skip_reason(why)) GTEST_SKIP() << why;
    constexpr int kBlocks = 1000;
    const auto before = fiber::common::live_allocations();
    std::thread other([&] {
        std::vector<void*> blocks;
        for (int i = 0; i < kBlocks; ++i) blocks.push_back(allocate_block(200));
        for (void* b : blocks) free_block(b, 200);
        // Most went back to malloc at once; a few are kept.
        EXPECT_LT(fiber::common::live_allocations(), before + kBlocks / 2 + 1);
        blocks.clear();
        blocks.shrink_to_fit();
    });
    other.join();
    EXPECT_EQ(fiber::common::live_allocations(), before);  // the rest went with the thread
}

TEST(FramePool, ASpawnAndAwaitLoopOnOneWorkerAllocatesNothingOnceWarm) {
    std::string why;
    if (skip_reason(why)) GTEST_SKIP() << why;
    run_on_one_worker([](fiber::Spawner) -> fiber::Task<> {
        co_await fiber::spawn(empty());  // warm: a frame and a cell are kept
        bool failed = false;
        {
            fiber::common::FailAllocations none;
            for (int i = 0; i < 100; ++i) co_await fiber::spawn(empty());
            failed = fiber::common::FailAllocations::failed();
        }
        EXPECT_FALSE(failed);
    });
}
