// A thread per sleep: simple, and about 8 MiB of address space and a
// kernel thread for every pending timer.
#include "fiber/thread_timer.hpp"

#include <algorithm>
#include <atomic>
#include <utility>

namespace fiber {

namespace {
// Relaxed: a statistic, read after the timers are done.
std::atomic<std::size_t> g_threads_started{0};
}  // namespace

std::size_t timer_threads_started() noexcept {
    return g_threads_started.load(std::memory_order_relaxed);
}

void ThreadSleep::await_suspend(std::coroutine_handle<> self) {
    // The thread is started while we hold the mutex, and the mutex is the
    // last thing we touch: once we unlock it, the thread may wake us, and
    // (on a multi-threaded executor) the coroutine may resume and destroy
    // this awaiter before await_suspend has returned.
    std::lock_guard lock(mutex_);
    waker_ = current_waker(self);
    thread_ = std::thread([this] { timer_thread(); });
    g_threads_started.fetch_add(1, std::memory_order_relaxed);
}

void ThreadSleep::timer_thread() {
    std::unique_lock lock(mutex_);
    // A condition variable, not sleep_until: the destructor can cut the
    // wait short. A loop, because a wait may also end early: spuriously, or
    // where the platform rounds the timeout down. A sleep never ends before
    // its time. At most a day per wait: some libraries convert a far
    // deadline (time_point::max(), "never") to another clock and overflow.
    using namespace std::chrono_literals;
    for (;;) {
        const auto now = std::chrono::steady_clock::now();
        if (cancelled_ || now >= deadline_) break;
        cancel_.wait_for(lock, std::min<std::chrono::steady_clock::duration>(deadline_ - now, 24h));
    }
    if (cancelled_) return;
    Waker waker = std::move(waker_);
    lock.unlock();
    std::move(waker).wake();  // from here on, the awaiter may be gone
}

ThreadSleep::~ThreadSleep() {
    {
        std::lock_guard lock(mutex_);
        cancelled_ = true;
        waker_ = Waker();  // not woken: the coroutine is being destroyed
    }
    cancel_.notify_one();
    if (thread_.joinable()) thread_.join();
}

}  // namespace fiber
