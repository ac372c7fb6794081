// The reactor: one background thread that waits on the Poller for I/O
// readiness and on the nearest timer deadline, and wakes the tasks waiting
// for either. Tasks never block; the reactor thread never runs a task.
// It waits in the poller only while its executor has nothing to run: a
// busy executor polls for itself, without blocking, when it runs dry.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
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
    // Set by fail(), under the reactor's lock: the poller failed before the
    // deadline, and the sleep ends with its error.
    bool failed = false;
};

/// One watched handle: what readiness the reactor has seen, and who waits.
/// A reader and a writer wait separately, so one task can read a socket
/// while another writes to it. Shared (std::shared_ptr) by its AsyncFd and
/// by every awaiter waiting on it, so none of them can see it freed; the
/// reactor itself holds it only briefly after removal (remove_source()).
struct IoSource {
    common::native_handle handle = common::invalid_handle;
    // The rest is guarded by the reactor's mutex.
    // Optimistic start: a new handle is tried before anyone waits for it,
    // so a read that can succeed at once never waits for an event.
    unsigned readiness = kReadable | kWritable;
    // Readiness events seen so far, one count per direction. With one count
    // for both, a write event bumped the reader's tick too: a reader whose
    // read would block kept its stale readiness and retried, and with the
    // reader and the writer on different workers each retried the other's
    // events (Tokio had the same bug: tokio-rs/tokio#8054).
    std::uint64_t read_tick = 0;
    std::uint64_t write_tick = 0;
    std::uint64_t& tick(unsigned direction) {
        return direction == kReadable ? read_tick : write_tick;
    }
    Waker reader;
    Waker writer;
    // Which wait each slot belongs to (0: none), so that a waiter that
    // gives up removes its own registration and never a later one's.
    std::uint64_t reader_wait = 0;
    std::uint64_t writer_wait = 0;
    std::uint64_t waits = 0;  // numbers the waits
    bool closed = false;      // removed: waiting on it fails
    // The reactor's list of live sources, from add_source() to
    // remove_source(), so that fail() can reach every waiter.
    IoSource* prev = nullptr;
    IoSource* next = nullptr;
};

class Reactor {
public:
    // Starts the reactor thread. `owner`: the executor whose reactor it is
    // (none for a reactor that a test drives by hand).
    explicit Reactor(const Scheduler* owner = nullptr);
    ~Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    /// Stops and joins the thread: after this no waker fires, and adding a
    /// timer or waiting for a handle fails (nothing would wake it).
    /// Idempotent. The Reactor object stays usable for cleaning up: every
    /// AsyncFd and sleep holds a reference to it.
    void stop();

    /// Throws std::logic_error after stop(); on any exception the timer is
    /// not queued and `waker` is dropped.
    void add_timer(TimerEntry& timer, Waker waker);
    void cancel_timer(TimerEntry& timer) noexcept;

    /// Registers `handle`. Throws what Poller::add throws.
    std::shared_ptr<IoSource> add_source(common::native_handle handle);
    /// Deregisters the source (call it before closing the handle) and wakes
    /// whoever waits on it: their wait fails with operation_canceled.
    void remove_source(const std::shared_ptr<IoSource>& source) noexcept;

    /// If `direction` is ready (or closed, or failed), sets `tick` to the
    /// direction's current tick and returns true. Otherwise numbers this wait
    /// in `wait`, stores `waker` in the direction's slot and returns false.
    /// Throws std::system_error (operation_canceled) if the source was
    /// removed, std::logic_error for a second waiter or a stopped reactor.
    bool ready_or_wait(IoSource& source, unsigned direction, std::uint64_t& tick, Waker& waker,
                       std::uint64_t& wait);
    /// After a wake: the tick, or operation_canceled if the source was
    /// removed meanwhile.
    std::uint64_t woken(IoSource& source, unsigned direction);
    /// Gives up wait number `wait`. If the reactor took its waker already,
    /// the slot is empty or belongs to a newer wait: that one stays.
    void cancel_wait(IoSource& source, unsigned direction, std::uint64_t wait) noexcept;

    /// An operation in `direction` would block. Forget that readiness,
    /// unless an event arrived after `tick` was read: that event may have
    /// brought the very data the failed operation missed.
    void clear_readiness(IoSource& source, unsigned direction, std::uint64_t tick);
    /// A read did not fill its buffer: the handle had no more data, so the
    /// next read would block, and may as well wait at once. Clears the
    /// readable bit as clear_readiness() does, but not the read-closed bit:
    /// end of stream may be what comes next.
    void clear_drained(IoSource& source, std::uint64_t tick);

    /// Polls without blocking, on the calling thread, and wakes what is
    /// ready; returns how many tasks of its own executor it woke. Does
    /// nothing while another thread polls. The executor calls it every so
    /// often while it works.
    std::size_t poll_ready();
    /// Called by the executor when it has nothing to run, before it sleeps:
    /// poll_ready(), and if that woke nothing, asks the reactor thread to
    /// wait in the poller until something happens. Returns at once.
    void poll_before_sleeping();

    /// If the poller has failed (its wait returned an error other than
    /// EINTR), throws that error, a std::system_error that names the call.
    /// From then on every timer and every wait for a handle throws it too.
    void rethrow_failure();

private:
    void loop();
    std::size_t fail(std::exception_ptr error) noexcept;  // the caller holds the turn
    std::size_t take_turn(bool poll, int timeout_ms);     // the caller holds the turn
    void clear(IoSource& source, unsigned direction, unsigned bits, std::uint64_t tick);
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
    // readiness and waker slots, and the list of removed sources. No
    // thread holds it while it waits in the poller, and
    // nobody wakes a Waker while holding it. Dropping a Waker under it is
    // allowed: that takes the executor's lock, and the order is always this
    // lock first, the executor's second (the executor never calls into the
    // reactor while holding its own).
    std::mutex mutex_;
    std::vector<TimerEntry*> heap_;  // a binary min-heap on (deadline, sequence)
    std::uint64_t next_sequence_ = 0;
    // The turn: one thread at a time polls, the reactor thread or the
    // executor (poll_ready). True from just before its wait in the poller
    // until it has woken what the wait returned; the holder alone uses
    // events_ and wake_. Events hold raw IoSource pointers (the poller's
    // keys), so a source removed meanwhile must stay alive until then: it
    // waits in `removed_`.
    bool polling_ = false;
    std::vector<PollEvent> events_ = std::vector<PollEvent>(256);
    // Dispatched, to wake outside the lock. Room for 64 from the start: a
    // turn that wakes fewer never allocates, so a worker that polls between
    // two steps of a task never fails for memory that task did not ask for.
    std::vector<Waker> wake_ = [] {
        std::vector<Waker> room;
        room.reserve(64);
        return room;
    }();
    std::vector<std::shared_ptr<IoSource>> removed_;
    std::size_t removals_ = 0;  // every kNotifyAfterRemovals, someone polls
    // The executor found nothing to run: the reactor thread may block in
    // the poller. Until then it sleeps on `idle_`, waking for timers only,
    // and leaves the poller to the executor. A thread blocked in the poller
    // while the executor works would be woken by every single event.
    // Cleared by any turn that has tasks to wake: the executor will run
    // them, and ask again when it is done.
    bool asked_ = false;
    // The executor that asks. A handle registered here may be waited on
    // by a task of another executor; waking that one gives ours no work.
    const Scheduler* const owner_;
    bool collect_ = false;      // poll once without blocking: see remove_source()
    bool turn_wanted_ = false;  // the reactor thread waits for the turn
    std::condition_variable idle_;
    // Sources registered and not removed. removed_ always has room for all
    // of them, so that remove_source(), which runs in destructors, never
    // allocates: add_source() reserves it.
    std::size_t live_sources_ = 0;
    IoSource* sources_ = nullptr;  // the live sources: a list through IoSource::next
    std::exception_ptr failure_;   // the poller's error; once set, never cleared
    bool stopping_ = false;
    std::thread thread_;
};

/// The reactor of the executor running on this thread (started on first
/// use), shared: the caller keeps it alive as long as it needs it.
std::shared_ptr<Reactor> current_reactor();

}  // namespace fiber::detail
