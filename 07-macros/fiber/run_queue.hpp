// RunQueue: one worker's local queue of ready tasks, a fixed ring of 256
// slots. Its owner pushes at the tail and pops at the head with no lock;
// other workers, when idle, steal half of it at once. Where the ring is
// full, the owner moves half of it to the shared injection queue. Header
// only and generic over the item type, so a test can drive it alone.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fiber::detail {

/// A single-producer, multi-consumer ring of `T*`, after Go's and Tokio's
/// run queues. Owner: push(), pop(). Any thread: steal_into(), size().
///
/// head_ and tail_ count pushes and pops since the start and wrap at 2^32;
/// slot i is slots_[i % kCapacity], and the items are those in [head, tail).
/// Only the owner moves tail_ (forward, by push). Head moves forward by a
/// compare-exchange, from the owner's pop or from a thief's steal: whoever
/// moves head past a slot has taken its item, so two threads can never both
/// take one item.
template <typename T, std::uint32_t kCapacity = 256>
class RunQueue {
    static_assert((kCapacity & (kCapacity - 1)) == 0,
                  "a power of two: i % kCapacity stays right at 2^32");

public:
    static constexpr std::uint32_t capacity() noexcept { return kCapacity; }

    /// Owner only. Appends `item`. If the ring is full, it takes the oldest
    /// half out of it and calls `overflow(items, n)` with those n items and
    /// `item` last, in queue order, so that the caller can move them all to
    /// another queue under one lock (Tokio's push_overflow).
    template <typename Overflow>
    void push(T* item, Overflow&& overflow) {
        while (!try_push(item)) {
            // Full. Claim the older half by moving head past it, just as a
            // steal would; if a thief moved head first, there is room now.
            const std::uint32_t head = head_.load(std::memory_order_acquire);
            if (tail_.load(std::memory_order_relaxed) - head < kCapacity) continue;
            constexpr std::uint32_t kHalf = kCapacity / 2;
            T* moved[kHalf + 1];
            for (std::uint32_t i = 0; i < kHalf; ++i) {
                moved[i] = slots_[(head + i) % kCapacity].load(std::memory_order_relaxed);
            }
            std::uint32_t expected = head;
            if (head_.compare_exchange_strong(expected, head + kHalf, std::memory_order_release,
                                              std::memory_order_relaxed)) {
                moved[kHalf] = item;
                overflow(moved, kHalf + 1);
                return;
            }
        }
    }

    /// Owner only. Appends `item` and returns true, or returns false if the
    /// ring is full.
    bool try_push(T* item) noexcept {
        // Our own tail: only this thread writes it.
        const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
        // acquire: a thief that moved head past a slot had read the slot
        // before (its compare-exchange is a release); so we overwrite the
        // slot only after its read, never under it.
        const std::uint32_t head = head_.load(std::memory_order_acquire);
        if (tail - head >= kCapacity) return false;
        slots_[tail % kCapacity].store(item, std::memory_order_relaxed);
        // release: a thief that reads this tail (acquire) also sees the
        // slot above, and everything this thread did to the task before.
        tail_.store(tail + 1, std::memory_order_release);
        return true;
    }

    /// Owner only. The oldest item, or nullptr if the ring is empty.
    T* pop() noexcept {
        for (;;) {
            // acquire: pairs with a thief's compare-exchange, as in push().
            std::uint32_t head = head_.load(std::memory_order_acquire);
            const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
            if (head == tail) return nullptr;
            T* item = slots_[head % kCapacity].load(std::memory_order_relaxed);
            // A thief may take this very slot at the same time: whoever
            // moves head first has it. release: a thief that then reads this
            // head (acquire) reads a tail at least as new as ours, so it
            // never sees head > tail.
            if (head_.compare_exchange_weak(head, head + 1, std::memory_order_release,
                                            std::memory_order_relaxed)) {
                return item;
            }
        }
    }

    /// Any thread but the owner, whose own queue `dst` must be. Takes half
    /// of this queue (rounded up: one of one), puts all but the newest of
    /// them into `dst` and returns that newest one to run now; nullptr if
    /// there was nothing to take or no room in `dst`.
    T* steal_into(RunQueue& dst) noexcept {
        // dst is ours: its tail is ours, its head only moves forward.
        const std::uint32_t dst_tail = dst.tail_.load(std::memory_order_relaxed);
        const std::uint32_t room =
            kCapacity - (dst_tail - dst.head_.load(std::memory_order_acquire));
        std::uint32_t n;
        for (;;) {
            // Head first, then tail (both acquire): the tail we read is at
            // least the one the owner had when it moved head to this value
            // (see pop()), so tail - head never underflows.
            std::uint32_t head = head_.load(std::memory_order_acquire);
            const std::uint32_t tail = tail_.load(std::memory_order_acquire);
            n = tail - head;
            // n > kCapacity: the owner popped and pushed more than a ring's
            // worth between our two loads, so our head is stale. Give up this
            // try; the owner is busy, and a searcher looks again.
            if (n == 0 || n > kCapacity) return nullptr;
            n -= n / 2;
            if (n > room) n = room;
            if (n == 0) return nullptr;
            // Copy first, claim after. The owner may be overwriting slots
            // we read only if head moved meanwhile; then the exchange below
            // fails and we drop the copy. The slots are atomics (relaxed),
            // so such a read is a stale value, not a data race.
            for (std::uint32_t i = 0; i < n; ++i) {
                dst.slots_[(dst_tail + i) % kCapacity].store(
                    slots_[(head + i) % kCapacity].load(std::memory_order_relaxed),
                    std::memory_order_relaxed);
            }
            // release: our reads of the slots come before the owner's next
            // writes to them (it loads head with acquire before writing).
            if (head_.compare_exchange_strong(head, head + n, std::memory_order_release,
                                              std::memory_order_relaxed)) {
                break;
            }
        }
        // The copies sat beyond dst's tail, where no thief reads; publish
        // all but the last, which we run ourselves.
        T* item = dst.slots_[(dst_tail + n - 1) % kCapacity].load(std::memory_order_relaxed);
        if (n > 1) dst.tail_.store(dst_tail + n - 1, std::memory_order_release);
        return item;
    }

    /// Any thread: how many items are queued. A snapshot that may be stale
    /// by the time it returns; exact when only the owner is running.
    std::uint32_t size() const noexcept {
        const std::uint32_t head =
            head_.load(std::memory_order_acquire);  // head first: see steal_into()
        const std::uint32_t tail = tail_.load(std::memory_order_acquire);
        const std::uint32_t n = tail - head;
        return n > kCapacity ? 0 : n;
    }
    bool empty() const noexcept { return size() == 0; }

private:
    // On a cache line of their own: the owner writes them at every push
    // and pop, and they should not share a line with another worker's.
    alignas(64) std::atomic<std::uint32_t> head_{0};
    std::atomic<std::uint32_t> tail_{0};
    // Atomic only so that a thief's speculative read of a slot the owner is
    // rewriting is well defined; relaxed everywhere: head_ and tail_ order.
    std::atomic<T*> slots_[kCapacity] = {};
};

}  // namespace fiber::detail
