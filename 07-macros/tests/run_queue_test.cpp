// The local run queue alone: first in, first out for its owner; a full
// ring hands half of itself to an overflow queue; a thief takes half; and
// under a race of the owner against several thieves, every item is taken
// exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "fiber/run_queue.hpp"

using fiber::detail::RunQueue;

namespace {

struct Item {
    int id = 0;
};

std::vector<Item> items(int n) {
    std::vector<Item> v(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)].id = i;
    return v;
}

// For the tests that must not overflow.
void no_overflow(Item**, std::uint32_t) { ADD_FAILURE() << "the ring overflowed"; }

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kRaceItems = 20'000;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr int kRaceItems = 20'000;
#else
constexpr int kRaceItems = 200'000;
#endif
#else
constexpr int kRaceItems = 200'000;
#endif

}  // namespace

TEST(RunQueue, TheOwnerPopsInPushOrder) {
    RunQueue<Item> queue;
    auto v = items(10);
    for (Item& item : v) queue.push(&item, no_overflow);
    EXPECT_EQ(queue.size(), 10u);
    for (int i = 0; i < 10; ++i) {
        Item* item = queue.pop();
        ASSERT_NE(item, nullptr);
        EXPECT_EQ(item->id, i);
    }
    EXPECT_EQ(queue.pop(), nullptr);
    EXPECT_TRUE(queue.empty());
}

TEST(RunQueue, AFullRingMovesItsOlderHalfAndTheNewItemToTheOverflow) {
    RunQueue<Item, 8> queue;
    auto v = items(9);
    std::vector<int> overflowed;
    auto overflow = [&](Item** moved, std::uint32_t n) {
        for (std::uint32_t i = 0; i < n; ++i) overflowed.push_back(moved[i]->id);
    };
    for (Item& item : v) queue.push(&item, overflow);
    // The four oldest, then the one that did not fit, in queue order.
    EXPECT_EQ(overflowed, (std::vector<int>{0, 1, 2, 3, 8}));
    std::vector<int> left;
    while (Item* item = queue.pop()) left.push_back(item->id);
    EXPECT_EQ(left, (std::vector<int>{4, 5, 6, 7}));
}

TEST(RunQueue, AThiefTakesHalfAndRunsTheNewestOfThem) {
    RunQueue<Item> victim, thief;
    auto v = items(10);
    for (Item& item : v) victim.push(&item, no_overflow);
    Item* first = victim.steal_into(thief);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first->id, 4);  // items 0..4 taken, 4 returned to run now
    std::vector<int> stolen, kept;
    while (Item* item = thief.pop()) stolen.push_back(item->id);
    while (Item* item = victim.pop()) kept.push_back(item->id);
    EXPECT_EQ(stolen, (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(kept, (std::vector<int>{5, 6, 7, 8, 9}));
    EXPECT_EQ(victim.steal_into(thief), nullptr);  // nothing left to take
}

TEST(RunQueue, AThiefTakesTheOnlyItem) {
    RunQueue<Item> victim, thief;
    Item one{7};
    victim.push(&one, no_overflow);
    EXPECT_EQ(victim.steal_into(thief), &one);
    EXPECT_TRUE(thief.empty());
    EXPECT_EQ(victim.pop(), nullptr);
}

// The owner pushes (overflowing now and then) and pops; three thieves
// steal into their own rings and pop those. Every item must be taken by
// exactly one of them. Run it under ThreadSanitizer too.
TEST(RunQueue, OwnerAndThievesRacingTakeEveryItemExactlyOnce) {
    auto v = items(kRaceItems);
    std::vector<std::atomic<int>> taken(v.size());
    std::atomic<int> total = 0;
    auto take = [&](Item* item) {
        taken[static_cast<std::size_t>(item->id)].fetch_add(1, std::memory_order_relaxed);
        total.fetch_add(1, std::memory_order_relaxed);
    };
    RunQueue<Item, 64> owner_queue;  // small: it overflows, thieves find it full
    std::atomic<bool> pushing = true;

    std::vector<std::thread> thieves;
    for (int t = 0; t < 3; ++t) {
        thieves.emplace_back([&] {
            RunQueue<Item, 64> mine;
            for (;;) {
                const bool done = !pushing.load(std::memory_order_acquire);
                if (Item* item = owner_queue.steal_into(mine)) take(item);
                while (Item* item = mine.pop()) take(item);
                if (done && owner_queue.empty()) return;
            }
        });
    }
    std::vector<Item*> overflowed;  // only the owner thread touches it
    auto overflow = [&](Item** moved, std::uint32_t n) {
        for (std::uint32_t i = 0; i < n; ++i) overflowed.push_back(moved[i]);
    };
    for (std::size_t i = 0; i < v.size(); ++i) {
        owner_queue.push(&v[i], overflow);
        if (i % 3 == 0) {
            if (Item* item = owner_queue.pop()) take(item);
        }
    }
    pushing.store(false, std::memory_order_release);
    while (Item* item = owner_queue.pop()) take(item);
    for (std::thread& t : thieves) t.join();
    for (Item* item : overflowed) take(item);

    EXPECT_EQ(total.load(), kRaceItems);
    int wrong = 0;
    for (auto& count : taken) wrong += count.load() != 1;
    EXPECT_EQ(wrong, 0) << "items taken never or more than once";
}
