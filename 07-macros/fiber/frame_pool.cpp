// The lists of blocks that each thread keeps (frame_pool.hpp).
#include "fiber/frame_pool.hpp"

#include <new>

// Off under the sanitizers (see frame_pool.hpp), and with mingw-w64: its
// thread_local variables live in emulated TLS, where a thread_local
// destructor that reads another thread_local variable may find a fresh
// copy of it; Flush below would find empty lists, and the kept blocks
// would leak with every thread.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(__MINGW32__)
#define FIBER_RECYCLE_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FIBER_RECYCLE_BLOCKS 0
#endif
#endif
#ifndef FIBER_RECYCLE_BLOCKS
#define FIBER_RECYCLE_BLOCKS 1
#endif

namespace fiber::detail {

namespace {

// Sizes in steps of 16 bytes, each 8 short of a multiple of 16: 24, 40,
// 56, ... 264. Those are what malloc's blocks hold on 64-bit glibc (a
// block of 16n bytes keeps 8 for its header), so a block asked for in a
// step costs no more than one asked for at the frame's exact size.
// Frames and cells are small; a larger block goes to malloc both ways.
constexpr std::size_t kSizes = 16;
constexpr std::size_t kStep = 16;
constexpr std::size_t kSmallest = 24;
constexpr std::size_t kLargest = kSmallest + kStep * (kSizes - 1);

// Blocks kept per size and thread: enough for a loop that spawns and
// awaits, or a burst of a few hundred tasks; at most 256 KiB per thread
// if every size is full.
constexpr unsigned kKept = 64;

struct FreeBlock {
    FreeBlock* next;
};

// Plain data, constant-initialised: usable at any time in the thread's
// life, even while other thread_local objects are being destroyed (their
// destructors may destroy frames).
struct Lists {
    FreeBlock* head[kSizes];
    unsigned count[kSizes];
    bool registered;  // the Flush below will empty us when the thread exits
    bool closed;      // it has: from now on, straight to malloc
};
constinit thread_local Lists t_lists{};

std::size_t step_of(std::size_t size) noexcept {
    return size <= kSmallest ? 0 : (size - kSmallest + kStep - 1) / kStep;
}
std::size_t rounded(std::size_t step) noexcept { return kSmallest + step * kStep; }

// Gives every kept block back to malloc when its thread exits.
struct Flush {
    bool armed = false;
    ~Flush() {
        Lists& lists = t_lists;
        lists.closed = true;
        for (std::size_t i = 0; i < kSizes; ++i) {
            while (FreeBlock* block = lists.head[i]) {
                lists.head[i] = block->next;
                ::operator delete(block);
            }
            lists.count[i] = 0;
        }
    }
};
thread_local Flush t_flush;

}  // namespace

bool blocks_recycled() noexcept { return FIBER_RECYCLE_BLOCKS != 0; }

void* allocate_block(std::size_t size) {
    if (FIBER_RECYCLE_BLOCKS && size != 0 && size <= kLargest) {
        const std::size_t i = step_of(size);
        Lists& lists = t_lists;
        if (FreeBlock* block = lists.head[i]) {
            lists.head[i] = block->next;
            --lists.count[i];
            return block;
        }
        // The rounded size: the block may be kept for any frame of its step.
        return ::operator new(rounded(i));
    }
    return ::operator new(size);
}

void free_block(void* block, std::size_t size) noexcept {
    if (FIBER_RECYCLE_BLOCKS && size != 0 && size <= kLargest) {
        const std::size_t i = step_of(size);
        Lists& lists = t_lists;
        if (!lists.closed && lists.count[i] < kKept) {
            if (!lists.registered) {
                lists.registered = true;
                t_flush.armed = true;  // constructed now, so destroyed at the thread's exit
            }
            lists.head[i] = new (block) FreeBlock{lists.head[i]};
            ++lists.count[i];
            return;
        }
        ::operator delete(block);
        return;
    }
    ::operator delete(block);
}

}  // namespace fiber::detail
