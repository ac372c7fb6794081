// Symmetric transfer keeps a chain of awaits from growing the stack.
//
// A million children that finish without suspending: each co_await starts
// the child and each child's end resumes the parent. If those resumptions
// were nested calls (or the compiler failed to make them tail calls), the
// stack would grow by a frame per await and overflow long before the end.
// We also measure it: the child records the stack position it runs at, and
// the spread between the deepest and shallowest must stay small.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "fiber/executor.hpp"

namespace {

struct StackSpan {
    std::uintptr_t lowest = UINTPTR_MAX;
    std::uintptr_t highest = 0;
};

fiber::Task<> child(StackSpan& span) {
    auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    span.lowest = std::min(span.lowest, here);
    span.highest = std::max(span.highest, here);
    co_return;
}

fiber::Task<> many_awaits(int count, int& done, StackSpan& span) {
    for (int i = 0; i < count; ++i) {
        co_await child(span);
        ++done;
    }
}

}  // namespace

TEST(Stack, MillionSynchronousAwaitsDoNotGrowTheStack) {
    constexpr int kAwaits = 1'000'000;
    int done = 0;
    StackSpan span;
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    spawner.spawn(many_awaits(kAwaits, done, span));
    executor.run();
    EXPECT_EQ(done, kAwaits);
    // Without tail calls this would be tens of megabytes (or a crash).
    EXPECT_LT(span.highest - span.lowest, 4096u);
}
