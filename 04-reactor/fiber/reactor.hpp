// The reactor: one background thread that waits on the Poller for I/O
// readiness and on the nearest timer deadline, and wakes the tasks waiting
// for either. Tasks never block; the reactor thread never runs a task.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "common/os.hpp"
#include "fiber/poller.hpp"
#include "fiber/waker.hpp"

namespace fiber::detail {

using Clock = std::chrono::steady_clock;

/// A pending sleep. It lives inside the sleep's awaiter, in the sleeping
/// coroutine's frame, so a timer costs no allocation; the heap holds
/// pointers to it.
struct TimerEntry {
    static constexpr std::size_t kNotQueued = SIZE_MAX;
    Clock::time_point deadline;
    std::uint64_t sequence = 0;      // equal deadlines fire in the order they were added
    std::size_t index = kNotQueued;  // position in the heap
    Waker waker;
};

/// One watched handle: what readiness the reactor has seen, and who waits.
/// A reader and a writer wait separately, so one task can read a socket
/// while another writes to it.
struct IoSource {
    common::native_handle handle = common::invalid_handle;
    // Optimistic start: a new handle is tried before anyone waits for it,
    // so a read that can succeed at once never goes through the reactor.
    unsigned readiness = kReadable | kWritable;
    std::uint64_t tick = 0;  // readiness events seen so far
    Waker reader;
    Waker writer;
};

class Reactor {
public:
    Reactor();  // starts the reactor thread
    ~Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    /// Stops and joins the thread: after this no waker fires. Idempotent.
    void stop();

    void add_timer(TimerEntry& timer, Waker waker);
    void cancel_timer(TimerEntry& timer) noexcept;

    IoSource* add_source(common::native_handle handle);
    void remove_source(IoSource* source) noexcept;

    /// If `direction` is ready (or the handle hung up or failed), sets `tick`
    /// to the source's current tick and returns true. Otherwise stores
    /// `waker` in the direction's slot and returns false.
    bool ready_or_wait(IoSource& source, unsigned direction, std::uint64_t& tick, Waker& waker);
    std::uint64_t tick(IoSource& source);
    void cancel_wait(IoSource& source, unsigned direction) noexcept;

    /// An operation in `direction` would block. Forget that readiness,
    /// unless an event arrived after `tick` was read: that event may have
    /// brought the very data the failed operation missed.
    void clear_readiness(IoSource& source, unsigned direction, std::uint64_t tick);

private:
    void loop();
    int poll_timeout_ms();  // caller holds mutex_
    void dispatch(const PollEvent& event, std::vector<Waker>& wake);
    void fire_timers(Clock::time_point now, std::vector<Waker>& wake);
    void heap_swap(std::size_t a, std::size_t b);
    void heap_up(std::size_t i);
    void heap_down(std::size_t i);
    void heap_remove(TimerEntry& timer);
    static bool earlier(const TimerEntry* a, const TimerEntry* b) {
        return a->deadline < b->deadline ||
               (a->deadline == b->deadline && a->sequence < b->sequence);
    }

    Poller poller_;
    // One lock for the reactor's state: the timer heap, every source's
    // readiness and waker slots, and the list of removed sources. The
    // reactor thread never holds it while it waits in the poller, and
    // nobody wakes a Waker while holding it. Dropping a Waker under it is
    // allowed: that takes the executor's lock, and the order is always this
    // lock first, the executor's second (the executor never calls into the
    // reactor while holding its own).
    std::mutex mutex_;
    std::vector<TimerEntry*> heap_;  // a binary min-heap on (deadline, sequence)
    std::uint64_t next_sequence_ = 0;
    std::vector<IoSource*> removed_;  // freed by the reactor thread, see loop()
    bool stopping_ = false;
    std::thread thread_;
};

/// The reactor of the executor running on this thread (started on first use).
Reactor& current_reactor();

}  // namespace fiber::detail
