// The reactor thread: wait for the poller or the nearest timer, then wake
// whoever is waiting for what happened.
#include "fiber/reactor.hpp"

#include <climits>
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#ifndef _WIN32
#include <csignal>
#endif

namespace fiber::detail {

namespace {

// A write to a pipe or socket whose reader is gone raises SIGPIPE, and its
// default action kills the process. A runtime wants the write to fail with
// EPIPE instead, which AsyncFd throws as std::system_error. So, as Rust
// programs do before main(), we ignore the signal: once, when the first
// reactor starts, and only if nobody installed a handler of their own.
// (For sockets alone, send() with MSG_NOSIGNAL would do; pipes have no
// such flag.)
void ignore_sigpipe() {
#ifndef _WIN32
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
        std::signal(SIGPIPE, SIG_IGN);
    }
#endif
}

// With no timer and no event the reactor may wait for ever, and sources
// removed meanwhile would pile up in removed_. Every this many, we wake it
// to free them. Tokio wakes its driver after 16 deregistrations too. The
// same when nobody polls: the IOCP poller frees a removed socket's state
// only when a wait() collects its cancelled requests.
constexpr std::size_t kNotifyAfterRemovals = 16;

[[noreturn]] void throw_closed(const IoSource& source, unsigned direction) {
    throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                            std::string(direction == kReadable ? "read" : "write") + " fd " +
                                std::to_string(source.handle) + ": closed while waiting");
}

}  // namespace

Reactor::Reactor(const Scheduler* owner) : owner_(owner), thread_([this] { loop(); }) {
    ignore_sigpipe();
}

Reactor::~Reactor() { stop(); }

void Reactor::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    poller_.notify();    // if it waits in the poller
    idle_.notify_all();  // if it waits for the executor
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    removed_.clear();  // the thread is gone: no event holds their keys
}

// The reactor thread. While the executor has work it leaves the poller
// alone and sleeps, waking for timers only. Once the executor has asked
// (it found nothing to run, not even by polling), it takes the turn and
// waits in the poller until an event, a deadline or a notify().
void Reactor::loop() {
    bool turn = false;  // inside take_turn(), which ends the turn unless it throws
    try {
        std::unique_lock lock(mutex_);
        for (;;) {
            if (stopping_ || failure_) return;  // failed: nobody polls any more
            const Clock::time_point now = Clock::now();
            const bool timer_due = !heap_.empty() && heap_.front()->deadline <= now;
            if (asked_ || collect_ || timer_due) {
                if (polling_) {  // the executor's turn: it ends in a moment
                    turn_wanted_ = true;
                    idle_.wait(lock);
                    continue;
                }
                polling_ = true;
                const int timeout = asked_ ? poll_timeout_ms() : 0;
                const bool poll = asked_ || std::exchange(collect_, false);
                lock.unlock();
                turn = true;
                take_turn(poll, timeout);
                turn = false;
                lock.lock();
                continue;
            }
            // Nothing to do until the next deadline, or until asked.
            Clock::time_point until = Clock::time_point::max();
            if (!heap_.empty()) until = heap_.front()->deadline;
            if (until == Clock::time_point::max()) {
                idle_.wait(lock);
            } else {
                idle_.wait_until(lock, until);
            }
        }
    } catch (const std::exception& e) {
        // take_turn() threw (out of memory while it dispatched; the poller's
        // own failure it hands to fail() itself): the turn is ours, and the
        // reactor ends as a failing poller ends it. Anywhere else only a
        // condition variable can have failed, which leaves nothing to trust.
        if (turn) {
            fail(std::current_exception());
            return;
        }
        std::fprintf(stderr, "fiber: the reactor failed: %s\n", e.what());
        std::terminate();
    }
}

std::size_t Reactor::poll_ready() {
    {
        std::lock_guard lock(mutex_);
        // polling_: the reactor thread polls. failure_: nobody polls.
        if (stopping_ || polling_ || failure_) return 0;
        polling_ = true;
    }
    // While the executor works, events pile up in the poller, and this one
    // system call collects them all.
    return take_turn(true, 0);
}

void Reactor::poll_before_sleeping() {
    if (poll_ready() > 0) return;  // tasks to run: no need for the reactor thread
    {
        std::lock_guard lock(mutex_);
        // If the reactor thread has the turn, perhaps for a timer only, it
        // waits in the poller once it is done, unless it woke a task.
        asked_ = true;
    }
    idle_.notify_one();
}

// The caller holds the turn (it set polling_). Waits in the poller unless
// `poll` is false, dispatches, fires due timers, wakes, and gives the turn
// back. Returns how many tasks of our own executor it woke.
std::size_t Reactor::take_turn(bool poll, int timeout_ms) {
    std::size_t n = 0;
    if (poll) {
        try {
            n = poller_.wait(events_, timeout_ms);
        } catch (...) {  // not EINTR (the poller retries that): for good
            return fail(std::current_exception());
        }
    }
    std::size_t own = 0;  // the tasks of our own executor among them
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < n; ++i) dispatch(events_[i], wake_);
        fire_timers(Clock::now(), wake_);
        for (const Waker& w : wake_) own += w.scheduler_ == owner_;
        // Our executor will have work: it asks again once it is done. Not
        // after the wakes below: by then it may have run that work and
        // asked again, and that request must stand. Not for a task of
        // another executor (it waits on a handle registered here): ours
        // gets no work from it and will not ask again, and its idle
        // workers would wait on a reactor that no longer polls.
        if (own > 0) asked_ = false;
    }
    // Wake outside the lock: wake() may take the executor's lock. A wake
    // never allocates here (the ready queues link the tasks themselves), so
    // none can fail and none needs to be kept for later.
    for (Waker& w : wake_) std::move(w).wake();
    wake_.clear();
    bool notify;
    {
        std::lock_guard lock(mutex_);
        // The turn's events are dispatched, and the next wait starts after
        // every removal so far, so it cannot report those keys: the sources
        // removed meanwhile can go.
        polling_ = false;
        removed_.clear();
        notify = std::exchange(turn_wanted_, false);
    }
    if (notify) idle_.notify_one();
    return own;
}

// The poller failed for good: no readiness and no deadline can be seen any
// more. The caller held the turn, on the reactor thread or on a worker;
// here it ends, and nobody takes it again. Every waiter is woken and finds
// the error: a sleep in await_resume(), a wait for a handle in woken();
// every later timer or wait throws it at once. One waker at a time, taken
// under the lock and woken outside it, so that nothing allocates; a
// failure comes once in a reactor's life, so the rescans of the source
// list cost nothing that matters. Returns how many tasks it woke.
std::size_t Reactor::fail(std::exception_ptr error) noexcept {
    bool notify;
    {
        std::lock_guard lock(mutex_);
        failure_ = std::move(error);
        polling_ = false;
        removed_.clear();  // no event will be dispatched any more
        notify = std::exchange(turn_wanted_, false);
    }
    if (notify) idle_.notify_one();  // the reactor thread waits for the turn: it ends
    std::size_t woken = 0;
    for (Waker& w : wake_) {  // dispatched by a turn that failed before it woke them
        std::move(w).wake();
        ++woken;
    }
    wake_.clear();
    for (;;) {
        Waker waker;
        {
            std::lock_guard lock(mutex_);
            if (!heap_.empty()) {
                TimerEntry& timer = *heap_.front();
                heap_remove(timer);
                timer.failed = true;
                waker = std::move(timer.waker);
            }
            for (IoSource* source = sources_; source && !waker; source = source->next) {
                if (source->reader) {
                    waker = std::move(source->reader);
                    source->reader_wait = 0;
                } else if (source->writer) {
                    waker = std::move(source->writer);
                    source->writer_wait = 0;
                }
            }
        }
        if (!waker) return woken;  // nobody waits, and nobody can wait any more
        std::move(waker).wake();   // never fails: see take_turn()
        ++woken;
    }
}

void Reactor::rethrow_failure() {
    std::lock_guard lock(mutex_);
    if (failure_) std::rethrow_exception(failure_);
}

int Reactor::poll_timeout_ms() {
    if (heap_.empty()) return -1;  // no timer: wait for I/O or notify()
    auto left = heap_.front()->deadline - Clock::now();
    if (left <= Clock::duration::zero()) return 0;
    // Round up: rounding down would wake us just before the deadline, and
    // we would spin through a few zero-length waits until it passes.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

namespace {

// What makes a direction ready: its own bit or its closed bit. An operation
// that would block proves that none of them holds any more, so
// clear_readiness() clears them all (a closed bit too: a socket registered
// before connect() reports a hang-up that connecting ends).
constexpr unsigned mask_of(unsigned direction) {
    return direction == kReadable ? kReadable | kReadClosed : kWritable | kWriteClosed;
}

}  // namespace

void Reactor::dispatch(const PollEvent& event, std::vector<Waker>& wake) {
    auto* source = static_cast<IoSource*>(event.key);  // alive: see removed_
    // Removed while we waited: nobody left to tell.
    if (source->closed) return;
    unsigned bits = event.readiness;
    // An error is for whichever operation comes next, in either direction:
    // both become ready, and each clears it when its operation would block.
    // Kept as its own sticky bit, it made every wait return at once, and a
    // reader spun on EAGAIN for ever.
    if (bits & kError) bits |= kReadable | kWritable;
    source->readiness |= bits & (mask_of(kReadable) | mask_of(kWritable));
    if (bits & mask_of(kReadable)) ++source->read_tick;
    if (bits & mask_of(kWritable)) ++source->write_tick;
    if ((bits & mask_of(kReadable)) && source->reader) {
        wake.push_back(std::move(source->reader));
        source->reader_wait = 0;
    }
    if ((bits & mask_of(kWritable)) && source->writer) {
        wake.push_back(std::move(source->writer));
        source->writer_wait = 0;
    }
}

void Reactor::fire_timers(Clock::time_point now, std::vector<Waker>& wake) {
    while (!heap_.empty() && heap_.front()->deadline <= now) {
        TimerEntry& timer = *heap_.front();
        heap_remove(timer);
        wake.push_back(std::move(timer.waker));
    }
}

bool Reactor::add_timer(TimerEntry& timer, Waker waker) {
    bool earliest;
    bool polling;
    {
        std::lock_guard lock(mutex_);
        // A stop request between the sleep's check and here: it found no
        // timer to remove, so it is up to us not to queue one.
        if (timer.cancelled) return false;
        if (stopping_) throw std::logic_error("fiber: sleep_for after its executor was destroyed");
        if (failure_) std::rethrow_exception(failure_);  // nothing would fire it
        // First the step that can fail (the vector may grow): if it throws,
        // nothing else has changed, and the entry is not in the heap.
        heap_.push_back(&timer);
        timer.index = heap_.size() - 1;
        timer.waker = std::move(waker);
        timer.sequence = next_sequence_++;
        heap_up(timer.index);
        earliest = timer.index == 0;
        polling = polling_;
    }
    // The reactor may be waiting with a later deadline as its timeout: a
    // new earliest timer must cut that wait short, in the poller or not.
    if (!earliest) return true;
    if (polling) poller_.notify();
    idle_.notify_one();
    return true;
}

void Reactor::cancel_timer(TimerEntry& timer) noexcept {
    std::lock_guard lock(mutex_);
    if (timer.index != TimerEntry::kNotQueued) heap_remove(timer);
    // Whoever holds the lock and finds the waker owns it. If the reactor
    // fired first, the slot is already empty and the wake is its business.
    timer.waker = Waker();
}

void Reactor::interrupt_timer(TimerEntry& timer) noexcept {
    Waker waker;
    {
        std::lock_guard lock(mutex_);
        timer.cancelled = true;
        // Queued: the sleep waits, and we are the one to wake it. Not
        // queued: either not added yet (add_timer() sees the flag) or fired
        // (the reactor took the waker and its wake is on its way).
        if (timer.index != TimerEntry::kNotQueued) {
            heap_remove(timer);
            waker = std::move(timer.waker);
        }
    }
    // Outside the lock (wake() may take the executor's); a wake never fails.
    if (waker) std::move(waker).wake();
}

std::shared_ptr<IoSource> Reactor::add_source(common::native_handle handle) {
    auto source = std::make_shared<IoSource>();
    source->handle = handle;
    std::lock_guard lock(mutex_);
    if (failure_) std::rethrow_exception(failure_);
    removed_.reserve(removed_.size() + live_sources_ + 1);  // may throw: nothing done yet
    poller_.add(handle, source.get());
    ++live_sources_;
    source->next = sources_;
    if (sources_) sources_->prev = source.get();
    sources_ = source.get();
    return source;
}

void Reactor::remove_source(const std::shared_ptr<IoSource>& source) noexcept {
    Waker reader;
    Waker writer;
    {
        std::lock_guard lock(mutex_);
        poller_.remove(source->handle, source.get());
        source->closed = true;
        reader = std::move(source->reader);
        writer = std::move(source->writer);
        source->reader_wait = source->writer_wait = 0;
        --live_sources_;
        if (source->prev) source->prev->next = source->next;
        if (source->next) source->next->prev = source->prev;
        if (sources_ == source.get()) sources_ = source->next;
        if (polling_) {
            // The reactor thread may hold an event with this source's key
            // that it has not dispatched yet: keep the source alive until
            // it has. Never allocates: add_source() made room.
            removed_.push_back(source);
        }
        if (++removals_ % kNotifyAfterRemovals == 0) {
            if (polling_) {
                poller_.notify();
            } else {
                collect_ = true;  // a poll that does not block, by the reactor thread
                idle_.notify_one();
            }
        }
    }
    // Outside the lock (wake() may take the executor's): the waiters
    // resume, find the source closed and fail.
    for (Waker* w : {&reader, &writer}) {
        if (*w) std::move(*w).wake();
    }
}

bool Reactor::ready_or_wait(IoSource& source, unsigned direction, std::uint64_t& tick, Waker& waker,
                            std::uint64_t& wait, const bool* cancelled) {
    std::lock_guard lock(mutex_);
    // Interrupted before it could register: interrupt_wait() found nothing
    // to take, so we must not store the waker.
    if (cancelled && *cancelled) return true;
    if (source.closed) throw_closed(source, direction);
    if (source.readiness & mask_of(direction)) {
        tick = source.tick(direction);
        return true;
    }
    if (stopping_) {
        throw std::logic_error("fiber: waiting for a handle whose executor was destroyed");
    }
    if (failure_) std::rethrow_exception(failure_);  // nothing would wake us
    Waker& slot = direction == kReadable ? source.reader : source.writer;
    if (slot) {
        throw std::logic_error(direction == kReadable
                                   ? "fiber: two tasks wait to read the same handle"
                                   : "fiber: two tasks wait to write the same handle");
    }
    // Checked and stored under the lock that dispatch() holds: an event
    // either came before (we saw the bit above) or finds the waker here.
    // `wait` is written before the lock is released, so before any thread
    // can take the waker and resume the waiter.
    wait = ++source.waits;
    (direction == kReadable ? source.reader_wait : source.writer_wait) = wait;
    slot = std::move(waker);
    return false;
}

std::uint64_t Reactor::woken(IoSource& source, unsigned direction) {
    std::lock_guard lock(mutex_);
    if (source.closed) throw_closed(source, direction);
    if (failure_) std::rethrow_exception(failure_);  // woken by fail()
    return source.tick(direction);
}

void Reactor::cancel_wait(IoSource& source, unsigned direction, std::uint64_t wait) noexcept {
    std::lock_guard lock(mutex_);
    std::uint64_t& current = direction == kReadable ? source.reader_wait : source.writer_wait;
    // Not ours any more: the reactor fired our waker, and another task may
    // be waiting in this slot now. Clearing it would strand that task.
    if (current != wait) return;
    current = 0;
    (direction == kReadable ? source.reader : source.writer) = Waker();
}

void Reactor::interrupt_wait(IoSource& source, unsigned direction, const std::uint64_t& wait,
                             bool& cancelled) noexcept {
    Waker waker;
    {
        std::lock_guard lock(mutex_);
        cancelled = true;
        std::uint64_t& current = direction == kReadable ? source.reader_wait : source.writer_wait;
        // As in cancel_wait(): only our own registration. wait == 0: not
        // registered yet (ready_or_wait() sees the flag) or woken already.
        if (wait != 0 && current == wait) {
            current = 0;
            waker = std::move(direction == kReadable ? source.reader : source.writer);
        }
    }
    if (waker) std::move(waker).wake();  // outside the lock, as above
}

void Reactor::clear_readiness(IoSource& source, unsigned direction, std::uint64_t tick) {
    clear(source, direction, mask_of(direction), tick);
}

void Reactor::clear_drained(IoSource& source, std::uint64_t tick) {
    clear(source, kReadable, kReadable, tick);
}

void Reactor::clear(IoSource& source, unsigned direction, unsigned bits, std::uint64_t tick) {
    {
        std::lock_guard lock(mutex_);
        if (source.closed) return;                   // nothing to rearm; the next wait fails
        if (source.tick(direction) != tick) return;  // a newer event: try the operation again
        source.readiness &= ~bits;
        if (source.readiness & mask_of(direction)) return;  // closed: still ready
    }
    poller_.rearm(source.handle, &source, direction);
}

// The heap keeps each entry's index up to date, so that a cancelled sleep
// is removed in O(log n) instead of being left behind to fire into nothing.
void Reactor::heap_swap(std::size_t a, std::size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->index = a;
    heap_[b]->index = b;
}

void Reactor::heap_up(std::size_t i) {
    while (i > 0 && earlier(heap_[i], heap_[(i - 1) / 2])) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

void Reactor::heap_down(std::size_t i) {
    for (;;) {
        std::size_t smallest = i;
        for (std::size_t child : {2 * i + 1, 2 * i + 2}) {
            if (child < heap_.size() && earlier(heap_[child], heap_[smallest])) smallest = child;
        }
        if (smallest == i) return;
        heap_swap(i, smallest);
        i = smallest;
    }
}

void Reactor::heap_remove(TimerEntry& timer) {
    std::size_t i = timer.index;
    heap_swap(i, heap_.size() - 1);
    heap_.pop_back();
    timer.index = TimerEntry::kNotQueued;
    if (i < heap_.size()) {
        heap_up(i);
        heap_down(i);
    }
}

}  // namespace fiber::detail
