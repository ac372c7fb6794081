// Registering, running and waiting out the callbacks of a stop request.
#include "fiber/stop_state.hpp"

#include <thread>

namespace fiber::detail {

void StopNode::attach(StopState* state) noexcept {
    if (!state) return;
    {
        std::lock_guard lock(state->mutex_);
        if (!state->requested_.load(std::memory_order_relaxed)) {
            next_ = state->head_;
            if (next_) next_->prev_ = this;
            state->head_ = this;
            linked_ = true;
            state_ = state;
            return;
        }
    }
    // Requested already: nobody else will run us. Outside the lock, as in
    // request_stop(), since the callback takes locks of its own.
    run_(*this);
}

void StopNode::detach() noexcept {
    StopState* state = std::exchange(state_, nullptr);
    if (!state) return;  // never registered, or run by attach()
    {
        std::lock_guard lock(state->mutex_);
        if (linked_) {
            state->unlink(*this);
            return;  // not run, and now it never will be
        }
    }
    // request_stop() took us off the list, and set running_ to us in the
    // same critical section, before ours: so running_ reads us until our
    // callback has returned. It takes one lock and wakes a task, and we
    // hold no lock that it could need: yield the thread until it is done.
    // (Parking would need a wake-up from the other side: the very thing
    // that std::stop_callback's semaphore loses on mingw.)
    while (state->running_.load(std::memory_order_acquire) == this) std::this_thread::yield();
}

void StopState::unlink(StopNode& node) noexcept {
    if (node.prev_) {
        node.prev_->next_ = node.next_;
    } else {
        head_ = node.next_;
    }
    if (node.next_) node.next_->prev_ = node.prev_;
    node.prev_ = node.next_ = nullptr;
    node.linked_ = false;
}

void StopState::request_stop() noexcept {
    // Empty, not default-constructed: a default std::stop_source allocates
    // its shared state, and this function is noexcept (abort(), a select's
    // win, a join's failure): out of memory, the process would end here.
    // Nothing on this path allocates; the copy below only counts a reference.
    std::stop_source user{std::nostopstate};
    std::unique_lock lock(mutex_);
    if (requested_.load(std::memory_order_relaxed)) return;  // someone else did
    requested_.store(true, std::memory_order_release);
    user = user_;  // a copy: token() may make user_ once we unlock
    lock.unlock();
    // First the user's token, so that a task our callbacks wake finds it
    // set. Its std::stop_callbacks (user code) run here, outside our lock.
    if (user.stop_possible()) user.request_stop();
    lock.lock();
    // One node at a time, outside the lock: a callback takes other locks.
    // A node detached meanwhile is simply no longer on the list.
    while (StopNode* node = head_) {
        unlink(*node);
        StopNode::Run run = node->run_;
        // release, as every store here: detach() may read the next value
        // stored (this one, or null after the run) and must then see all
        // the earlier callbacks' writes.
        running_.store(node, std::memory_order_release);
        lock.unlock();
        run(*node);  // the node is alive: its detach() waits for running_
        running_.store(nullptr, std::memory_order_release);
        lock.lock();
    }
}

std::stop_token StopState::token() {
    std::lock_guard lock(mutex_);
    if (!user_.stop_possible()) {
        user_ = std::stop_source();  // allocates; may throw std::bad_alloc
        // Requested before it existed: set it now. Nothing can be
        // registered on it yet, so no user code runs under our lock.
        if (requested_.load(std::memory_order_relaxed)) user_.request_stop();
    }
    return user_.get_token();
}

}  // namespace fiber::detail
