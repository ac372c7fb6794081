// A task's stop request, as the runtime's own awaiters see it: a flag and a
// short list of callbacks, one per awaiter waiting in a task that may be
// stopped. Whoever may request the stop (a JoinHandle, a join's or a
// select's children) and the tasks it may stop share one StopState.
//
// Why not std::stop_callback, which does the same: a std::stop_callback
// destroyed while its callback runs on another thread waits for it on a
// std::binary_semaphore, an atomic wait, and the mingw-w64 GCC 12 library
// loses wake-ups there (see fiber/parker.hpp): a select's loser would then
// sleep for ever. Here the awaiter waits out a running callback by yielding
// its thread until the callback returns. Callbacks are short (one lock, one
// wake), so the wait is too. User code still gets a real std::stop_token
// (fiber/cancel.hpp): a request reaches it as well.
#pragma once

#include <atomic>
#include <mutex>
#include <stop_token>
#include <utility>

namespace fiber::detail {

class StopState;

// One registration on a StopState, in the awaiter that waits. The node is
// the base of StopCallback<F>, which holds the callable.
class StopNode {
public:
    StopNode(const StopNode&) = delete;
    StopNode& operator=(const StopNode&) = delete;

protected:
    using Run = void (*)(StopNode&) noexcept;
    explicit StopNode(Run run) noexcept : run_(run) {}
    ~StopNode() = default;
    // Registers with `state` (null: nothing can stop the task). If stop was
    // requested already, runs the callback here and now instead.
    void attach(StopState* state) noexcept;
    // Deregisters. Once it returns, the callback is not running and never
    // will: if another thread runs it at this moment, waits until it has
    // returned. So the callback must not detach its own node.
    void detach() noexcept;

private:
    friend class StopState;
    Run run_;
    StopState* state_ = nullptr;  // registered with; null once detached
    StopNode* prev_ = nullptr;    // the links and linked_: under state_'s mutex
    StopNode* next_ = nullptr;
    bool linked_ = false;
};

/// Runs `f()` once, on the thread that requests stop, if that happens
/// while the StopCallback exists; at once, in the constructor, if stop was
/// requested before. As std::stop_callback, but its destructor never
/// blocks on an atomic wait. Not movable: the state links to it.
template <typename F>
class StopCallback final : StopNode {
public:
    StopCallback(StopState* state, F f) noexcept : StopNode(&invoke), f_(std::move(f)) {
        attach(state);  // after f_ is built: it may run at once
    }
    ~StopCallback() { detach(); }

private:
    static void invoke(StopNode& node) noexcept { static_cast<StopCallback&>(node).f_(); }
    F f_;
};

// The shared state. Counted: every task it may stop holds a reference (in
// its cell), and so does whoever may request the stop. A JoinHandle's task
// has one inside its cell instead, uncounted (join_handle.hpp).
//
// Lock order: mutex_ is a leaf. It is never held while a callback runs or
// while another lock is taken. A callback takes one lock of its own (the
// reactor's, a JoinHandle's) and wakes a task (the executor's lock); the
// awaiter that waits out a running callback holds no lock at all, so the
// callback always gets to finish, on whichever worker either of them runs.
class StopState {
public:
    /// A state in an object of its own (a JoinHandle's task): the object
    /// keeps it alive, and its count is not used.
    StopState() = default;
    ~StopState() = default;
    StopState(const StopState&) = delete;
    StopState& operator=(const StopState&) = delete;

    /// A new state on the heap, with one reference: the caller's.
    static StopState* make() { return new StopState(); }
    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        // acq_rel: every use by the other holders happens before the delete.
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// acquire: pairs with the release in request_stop().
    bool stop_requested() const noexcept { return requested_.load(std::memory_order_acquire); }

    /// The first call runs every registered callback, one after the other,
    /// on this thread; later calls do nothing. From any thread. Never
    /// allocates.
    void request_stop() noexcept;

    /// A std::stop_token for user code, requested together with us. Made
    /// the first time it is asked for: most tasks never ask.
    std::stop_token token();

private:
    friend class StopNode;
    void unlink(StopNode& node) noexcept;  // caller holds mutex_

    std::atomic<int> refs_{1};
    std::atomic<bool> requested_{false};  // written under mutex_, read anywhere
    // The node whose callback request_stop() runs right now, outside
    // mutex_, or null. Stored with release after the callback returns,
    // loaded with acquire by detach(): seeing another value means the
    // callback is over, and everything it wrote is visible.
    std::atomic<StopNode*> running_{nullptr};
    std::mutex mutex_;                         // guards the list, and user_
    StopNode* head_ = nullptr;                 // the registered nodes
    std::stop_source user_{std::nostopstate};  // made by token()
};

/// A counted reference to a StopState; empty: a task nobody can stop.
class StopRef {
public:
    StopRef() noexcept = default;
    /// A new state, for a JoinHandle or a join's or select's children.
    static StopRef make() { return StopRef(StopState::make()); }
    StopRef(const StopRef& other) noexcept : state_(other.state_) {
        if (state_) state_->add_ref();
    }
    StopRef(StopRef&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    StopRef& operator=(StopRef other) noexcept {
        std::swap(state_, other.state_);
        return *this;
    }
    ~StopRef() {
        if (state_) state_->release();
    }

    StopState* get() const noexcept { return state_; }
    /// Hands the reference over to the caller, who releases it.
    StopState* release() noexcept { return std::exchange(state_, nullptr); }
    explicit operator bool() const noexcept { return state_ != nullptr; }
    void request_stop() const noexcept {
        if (state_) state_->request_stop();
    }

private:
    explicit StopRef(StopState* state) noexcept : state_(state) {}
    StopState* state_ = nullptr;
};

}  // namespace fiber::detail
