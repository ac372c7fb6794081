// Where coroutine frames and task cells come from: blocks that each thread
// keeps when it frees them, to hand out again. A spawned task's frame is
// allocated on one thread and freed on the worker that ran it to its end;
// with malloc, that free takes the allocator's path for memory of another
// thread, and a spawn-and-await loop pays for malloc twice per task. Here
// the freeing thread keeps the block, in a list per size, and its next
// frame of that size takes it back: no call into malloc at all. Each list
// is bounded, so a thread that only frees (a worker that ends tasks
// another thread spawns) gives the rest back to malloc; what a thread
// keeps goes back to malloc when it exits.
//
// Under AddressSanitizer and ThreadSanitizer every block goes straight to
// malloc, so that they see each frame's life; with mingw-w64 too, whose
// emulated thread-local storage could not give the kept blocks back when
// a thread exits (frame_pool.cpp).
#pragma once

#include <cstddef>

namespace fiber::detail {

/// A block of at least `size` bytes, aligned as operator new aligns.
/// Throws std::bad_alloc.
void* allocate_block(std::size_t size);

/// Gives back a block from allocate_block(size), from any thread.
void free_block(void* block, std::size_t size) noexcept;

/// Whether blocks are recycled in this build (not under a sanitizer or mingw-w64).
bool blocks_recycled() noexcept;

}  // namespace fiber::detail
