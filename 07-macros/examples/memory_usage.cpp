// memory_usage: what a parked task costs. Parks a million tasks (each
// waits for a wake that comes only at the end), reads the resident memory
// before and after, and shows where the bytes go: the task's coroutine
// frame, the cell the executor keeps it in, and its Waker.
// A counting operator new (below) measures the blocks the runtime asks
// malloc for: a frame's size as the compiler computed it, rounded up to
// the step of the runtime's recycled blocks (fiber/frame_pool.hpp); the
// resident memory adds what malloc puts around each block.
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "common/args.hpp"
#include "fiber/executor.hpp"

#if defined(__linux__)
#include <unistd.h>

#include <fstream>
#endif

// Sanitizers put red zones around every block and keep freed ones for a
// while: their figures say little, and a million tasks take long there.
// ThreadSanitizer also brings its own operator new, so ours (which counts
// the frames) is left out there, and the frames go unmeasured.
#if defined(__SANITIZE_THREAD__)
#define MEMORY_USAGE_SANITIZED 1
#define MEMORY_USAGE_OWN_NEW 0
#elif defined(__SANITIZE_ADDRESS__)
#define MEMORY_USAGE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MEMORY_USAGE_SANITIZED 1
#define MEMORY_USAGE_OWN_NEW 0
#elif __has_feature(address_sanitizer)
#define MEMORY_USAGE_SANITIZED 1
#endif
#endif
#ifndef MEMORY_USAGE_SANITIZED
#define MEMORY_USAGE_SANITIZED 0
#endif
#ifndef MEMORY_USAGE_OWN_NEW
#define MEMORY_USAGE_OWN_NEW 1
#endif

namespace {

// The allocations one thread makes while it records: the frames of one
// task. Other threads (and this one, when not recording) are not counted.
struct Recording {
    std::size_t allocations = 0;
    std::size_t bytes = 0;
};
thread_local Recording* t_recording = nullptr;

// Resident memory in bytes, or 0 where we cannot tell. Linux: the second
// field of /proc/self/statm, in pages. Other systems have their own
// calls (Windows' working set, macOS's task_info); this example reads
// only Linux's, and prints the frame sizes alone elsewhere.
std::size_t resident_bytes() {
#if defined(__linux__)
    std::ifstream statm("/proc/self/statm");
    std::size_t size = 0;
    std::size_t resident = 0;
    if (!(statm >> size >> resident)) return 0;
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
#else
    return 0;
#endif
}

// Where the tasks wait: each parks its Waker here, and the driver wakes
// them all at the end. One mutex, because the workers park tasks at once.
class ParkingLot {
public:
    explicit ParkingLot(std::size_t tasks) : expected_(tasks) {
        // Reserved, not touched: untouched pages are not resident yet, so
        // the Waker slots count in "after", as a task's share of the lot.
        parked_.reserve(tasks);
    }

    // `co_await lot.park()`: suspends until wake_all().
    struct Park {
        ParkingLot& lot;
        bool await_ready() noexcept { return false; }
        void await_suspend(std::coroutine_handle<> self) {
            lot.add(fiber::current_waker(self));
            // The waker is published: nothing here touches *this again.
        }
        void await_resume() noexcept {}
    };
    Park park() noexcept { return {*this}; }

    // `co_await lot.all_parked()`: suspends the driver until every task
    // has parked.
    struct AllParked {
        ParkingLot& lot;
        bool await_ready() noexcept { return false; }
        bool await_suspend(std::coroutine_handle<> self) {
            fiber::Waker waker = fiber::current_waker(self);
            std::lock_guard lock(lot.mutex_);
            if (lot.parked_.size() == lot.expected_) return false;  // all in already
            lot.driver_ = std::move(waker);  // the last task to park wakes us
            return true;
        }
        void await_resume() noexcept {}
    };
    AllParked all_parked() noexcept { return {*this}; }

    std::size_t wake_all() {
        std::vector<fiber::Waker> parked;
        {
            std::lock_guard lock(mutex_);
            parked = std::move(parked_);
        }
        for (fiber::Waker& w : parked) std::move(w).wake();
        return parked.size();
    }

private:
    void add(fiber::Waker waker) {
        fiber::Waker driver;
        {
            std::lock_guard lock(mutex_);
            parked_.push_back(std::move(waker));  // reserved: never reallocates
            if (parked_.size() == expected_) driver = std::move(driver_);
        }
        if (driver) std::move(driver).wake();  // outside our lock
    }

    std::mutex mutex_;  // guards everything below
    std::vector<fiber::Waker> parked_;
    fiber::Waker driver_;
    std::size_t expected_;
};

// The task we park a million of: as small as a task can be.
fiber::Task<> parked(ParkingLot& lot) { co_await lot.park(); }

struct Figures {
    std::size_t tasks = 0;
    std::size_t before = 0;  // resident bytes
    std::size_t after = 0;
    Recording task_frame;  // allocated by calling parked()
    Recording cell;        // allocated by Spawner::spawn()
};

// Spawns the tasks, waits until all have parked, measures, wakes them.
fiber::Task<> drive(fiber::Spawner spawner, ParkingLot& lot, Figures& figures) {
    figures.before = resident_bytes();
    for (std::size_t i = 0; i < figures.tasks; ++i) {
        // The last one is measured: the first spawns start the workers'
        // threads, whose allocations are not the task's.
        if (i + 1 == figures.tasks) {
            t_recording = &figures.task_frame;
            fiber::Task<> task = parked(lot);
            t_recording = &figures.cell;
            spawner.spawn(std::move(task));
            t_recording = nullptr;
        } else {
            spawner.spawn(parked(lot));
        }
    }
    co_await lot.all_parked();
    figures.after = resident_bytes();
    std::printf("woke %zu parked tasks\n", lot.wake_all());
}

double per_task(std::size_t bytes, std::size_t tasks) {
    return static_cast<double>(bytes) / static_cast<double>(tasks);
}

void print_frame(const char* what, const Recording& r) {
    if (r.allocations == 0) {
        std::printf("  %-30s not measured (no counting operator new here)\n", what);
    } else {
        std::printf("  %-30s %4zu B in %zu allocation(s)\n", what, r.bytes, r.allocations);
    }
}

void report(const Figures& f) {
    const std::size_t frames = f.task_frame.bytes + f.cell.bytes;
    std::printf("parked tasks: %zu\n", f.tasks);
    if (f.before == 0 || f.after == 0) {
        std::printf("bytes per parked task: not measured (no resident size on this system)\n");
    } else {
        const double total = per_task(f.after - f.before, f.tasks);
        std::printf("resident: %.1f MiB before, %.1f MiB parked\n",
                    static_cast<double>(f.before) / (1 << 20),
                    static_cast<double>(f.after) / (1 << 20));
        std::printf("bytes per parked task: %.0f\n", total);
    }
#if MEMORY_USAGE_SANITIZED
    std::printf("(a sanitizer build: its red zones inflate every block)\n");
#endif
    std::printf("where they go, per task:\n");
    print_frame("task frame, parked():", f.task_frame);
    print_frame("task cell, the executor's:", f.cell);
    std::printf("    of which its TaskHeader:     %4zu B\n", sizeof(fiber::detail::TaskHeader));
    std::printf("  its Waker, in the lot:         %4zu B\n", sizeof(fiber::Waker));
    if (f.before != 0 && f.after != 0 && frames != 0) {
        const double rest = per_task(f.after - f.before, f.tasks) -
                            static_cast<double>(frames + sizeof(fiber::Waker));
        // glibc's malloc adds an 8-byte header and rounds each block up to
        // 16 bytes: two blocks per task (the frame and the cell) cost 16 to
        // 46 bytes beyond what they hold. Page tables and the allocator's
        // free lists add a little.
        std::printf("  malloc's headers, the rest:    %4.0f B\n", rest);
    }
}

}  // namespace

#if MEMORY_USAGE_OWN_NEW
// Counts the allocations of a thread that records; the others pass through.
void* operator new(std::size_t size) {
    if (Recording* r = t_recording) {
        ++r->allocations;
        r->bytes += size;
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

int main(int argc, char** argv) {
#if MEMORY_USAGE_SANITIZED
    constexpr long kDefaultTasks = 100'000;
#else
    constexpr long kDefaultTasks = 1'000'000;
#endif
    fiber::common::Args args(argc, argv, {"--tasks"}, "[--tasks N]");
    try {
        Figures figures;
        figures.tasks = static_cast<std::size_t>(args.number("--tasks", kDefaultTasks));
        if (figures.tasks == 0) args.fail("--tasks needs a number > 0");
        ParkingLot lot(figures.tasks);
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(drive(spawner, lot, figures));
        executor.run();
        report(figures);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
