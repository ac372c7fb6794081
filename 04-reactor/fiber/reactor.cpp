// The reactor thread: wait for the poller or the nearest timer, then wake
// whoever is waiting for what happened.
#include "fiber/reactor.hpp"

#include <climits>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <utility>

namespace fiber::detail {

Reactor::Reactor() : thread_([this] { loop(); }) {}

Reactor::~Reactor() {
    stop();
    for (IoSource* source : removed_) delete source;
}

void Reactor::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    poller_.notify();
    if (thread_.joinable()) thread_.join();
}

void Reactor::loop() {
    std::vector<PollEvent> events(256);
    std::vector<Waker> wake;
    try {
        for (;;) {
            int timeout;
            {
                std::lock_guard lock(mutex_);
                if (stopping_) return;
                // Sources removed since the last wait can still appear in
                // the events that wait returned; they are deregistered now,
                // so the next wait will not report them: free them here.
                for (IoSource* source : removed_) delete source;
                removed_.clear();
                timeout = poll_timeout_ms();
            }
            std::size_t n = poller_.wait(events, timeout);
            {
                std::lock_guard lock(mutex_);
                for (std::size_t i = 0; i < n; ++i) dispatch(events[i], wake);
                fire_timers(Clock::now(), wake);
            }
            // Wake outside the lock: wake() takes the executor's lock.
            for (Waker& w : wake) std::move(w).wake();
            wake.clear();
        }
    } catch (const std::exception& e) {
        // The poller failed (not EINTR): no task could ever be woken again.
        std::fprintf(stderr, "fiber: the reactor failed: %s\n", e.what());
        std::terminate();
    }
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
    auto* source = static_cast<IoSource*>(event.key);
    unsigned bits = event.readiness;
    // An error is for whichever operation comes next, in either direction:
    // both become ready, and each clears it when its operation would block.
    // Kept as its own sticky bit, it made every wait return at once, and a
    // reader spun on EAGAIN for ever.
    if (bits & kError) bits |= kReadable | kWritable;
    source->readiness |= bits & (mask_of(kReadable) | mask_of(kWritable));
    ++source->tick;
    if ((bits & mask_of(kReadable)) && source->reader) wake.push_back(std::move(source->reader));
    if ((bits & mask_of(kWritable)) && source->writer) wake.push_back(std::move(source->writer));
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
        timer.waker = std::move(waker);
        timer.sequence = next_sequence_++;
        timer.index = heap_.size();
        heap_.push_back(&timer);
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

IoSource* Reactor::add_source(common::native_handle handle) {
    auto* source = new IoSource;
    source->handle = handle;
    try {
        poller_.add(handle, source);
    } catch (...) {
        delete source;
        throw;
    }
    return source;
}

void Reactor::remove_source(IoSource* source) noexcept {
    std::lock_guard lock(mutex_);
    poller_.remove(source->handle, source);
    source->reader = Waker();
    source->writer = Waker();
    removed_.push_back(source);  // not deleted yet: see loop()
}

bool Reactor::ready_or_wait(IoSource& source, unsigned direction, std::uint64_t& tick,
                            Waker& waker) {
    std::lock_guard lock(mutex_);
    if (source.readiness & mask_of(direction)) {
        tick = source.tick;
        return true;
    }
    Waker& slot = direction == kReadable ? source.reader : source.writer;
    if (slot) {
        throw std::logic_error(direction == kReadable
                                   ? "fiber: two tasks wait to read the same handle"
                                   : "fiber: two tasks wait to write the same handle");
    }
    // Checked and stored under the lock that dispatch() holds: an event
    // either came before (we saw the bit above) or finds the waker here.
    slot = std::move(waker);
    return false;
}

std::uint64_t Reactor::tick(IoSource& source) {
    std::lock_guard lock(mutex_);
    return source.tick;
}

void Reactor::cancel_wait(IoSource& source, unsigned direction) noexcept {
    // One waiter per direction at a time, so the slot holds our waker, or
    // nothing if the reactor already took it.
    std::lock_guard lock(mutex_);
    (direction == kReadable ? source.reader : source.writer) = Waker();
}

void Reactor::clear_readiness(IoSource& source, unsigned direction, std::uint64_t tick) {
    {
        std::lock_guard lock(mutex_);
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
