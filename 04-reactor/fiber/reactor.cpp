// The reactor thread: wait for the poller or the nearest timer, then wake
// whoever is waiting for what happened.
#include "fiber/reactor.hpp"

#include <climits>
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
// to free them. Tokio wakes its driver after 16 deregistrations too.
constexpr std::size_t kNotifyAfterRemovals = 16;

[[noreturn]] void throw_closed(const IoSource& source, unsigned direction) {
    throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                            std::string(direction == kReadable ? "read" : "write") + " fd " +
                                std::to_string(source.handle) + ": closed while waiting");
}

}  // namespace

Reactor::Reactor() : thread_([this] { loop(); }) { ignore_sigpipe(); }

Reactor::~Reactor() { stop(); }

void Reactor::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    poller_.notify();
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    removed_.clear();  // the thread is gone: no event holds their keys
}

void Reactor::loop() {
    std::vector<PollEvent> events(256);
    std::vector<Waker> wake;
    // Whatever escapes, the poller's error above all, ends the reactor:
    // fail() hands it to every waiter, and to run(). Not std::terminate():
    // the program decides what a dead reactor means for it.
    try {
        for (;;) {
            int timeout;
            {
                std::lock_guard lock(mutex_);
                if (stopping_) return;
                timeout = poll_timeout_ms();
                if (!wake.empty() && (timeout < 0 || timeout > 1)) timeout = 1;  // a retry
                polling_ = true;
            }
            std::size_t n = poller_.wait(events, timeout);
            {
                std::lock_guard lock(mutex_);
                for (std::size_t i = 0; i < n; ++i) dispatch(events[i], wake);
                fire_timers(Clock::now(), wake);
                // The batch is dispatched, and the next wait starts after
                // every removal so far, so it cannot report those keys:
                // the sources removed while we waited can go.
                polling_ = false;
                removed_.clear();
            }
            // Wake outside the lock: wake() takes the executor's lock. A
            // wake that runs out of memory leaves its waker whole: keep it,
            // and try again after a short wait rather than lose the task.
            std::size_t kept = 0;
            for (Waker& w : wake) {
                try {
                    std::move(w).wake();
                } catch (const std::bad_alloc&) {
                    wake[kept++] = std::move(w);
                }
            }
            wake.resize(kept);
        }
    } catch (...) {
        fail(std::current_exception());
    }
}

// The poller failed for good (not EINTR): no readiness and no deadline can
// be seen any more. Every waiter is woken and finds the error: a sleep in
// await_resume(), a wait for a handle in woken(); every later timer or
// wait throws it at once. One waker at a time, taken under the lock and
// woken outside it, so that nothing allocates; a failure comes once in a
// reactor's life, so the rescans of the source list cost nothing that
// matters.
void Reactor::fail(std::exception_ptr error) noexcept {
    {
        std::lock_guard lock(mutex_);
        failure_ = std::move(error);
        polling_ = false;
        removed_.clear();  // no event will be dispatched any more
    }
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
        if (!waker) return;  // nobody waits, and nobody can wait any more
        try {
            std::move(waker).wake();
        } catch (...) {  // out of memory: the waker is dropped, as in remove_source()
        }
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
    ++source->tick;
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

void Reactor::add_timer(TimerEntry& timer, Waker waker) {
    bool earliest;
    {
        std::lock_guard lock(mutex_);
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
    }
    // The reactor may be waiting with a later deadline as its timeout: a
    // new earliest timer must cut that wait short.
    if (earliest) poller_.notify();
}

void Reactor::cancel_timer(TimerEntry& timer) noexcept {
    std::lock_guard lock(mutex_);
    if (timer.index != TimerEntry::kNotQueued) heap_remove(timer);
    // Whoever holds the lock and finds the waker owns it. If the reactor
    // fired first, the slot is already empty and the wake is its business.
    timer.waker = Waker();
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
            if (removed_.size() % kNotifyAfterRemovals == 0) poller_.notify();
        }
    }
    // Outside the lock (wake() takes the executor's): the waiters resume,
    // find the source closed and fail. Should a wake run out of memory, the
    // waker is dropped instead; its task waits until its executor goes.
    for (Waker* w : {&reader, &writer}) {
        if (!*w) continue;
        try {
            std::move(*w).wake();
        } catch (...) {
        }
    }
}

bool Reactor::ready_or_wait(IoSource& source, unsigned direction, std::uint64_t& tick, Waker& waker,
                            std::uint64_t& wait) {
    std::lock_guard lock(mutex_);
    if (source.closed) throw_closed(source, direction);
    if (source.readiness & mask_of(direction)) {
        tick = source.tick;
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
    return source.tick;
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

void Reactor::clear_readiness(IoSource& source, unsigned direction, std::uint64_t tick) {
    {
        std::lock_guard lock(mutex_);
        if (source.closed) return;        // nothing to rearm; the next wait fails
        if (source.tick != tick) return;  // a newer event: try the operation again
        source.readiness &= ~mask_of(direction);
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
