// The LIFO slot is never stranded: a task woken into a worker's LIFO slot
// is run by an idle worker when the task that woke it keeps its worker
// (it computes without awaiting, or blocks its thread).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <thread>

#include "fiber/executor.hpp"
#include "fiber/waker.hpp"
#include "fiber/yield.hpp"

using namespace std::chrono_literals;

namespace {

// What the two tasks of the test share. The flags are atomics: the tasks
// may run on two workers at once, which is the point.
struct LifoStrandCase {
    fiber::Waker b_waker;                // written by b before b_parked
    std::atomic<bool> b_parked = false;  // b's Waker is in b_waker
    std::atomic<bool> b_ran = false;     // b ran after a woke it
    std::thread::id a_thread, b_thread;  // read after run()
    std::chrono::steady_clock::duration b_waited{};
};

// Suspends b, hands its Waker over, then says so. After the store of
// b_parked, a may wake b on another worker: nothing here touches the frame.
struct LifoStrandPark {
    LifoStrandCase* c;
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> self) {
        c->b_waker = fiber::current_waker(self);
        c->b_parked.store(true, std::memory_order_release);
    }
    void await_resume() noexcept {}
};

fiber::Task<> lifo_strand_b(LifoStrandCase& c) {
    co_await LifoStrandPark{&c};
    c.b_thread = std::this_thread::get_id();
    c.b_ran.store(true, std::memory_order_release);
}

fiber::Task<> lifo_strand_a(LifoStrandCase& c) {
    while (!c.b_parked.load(std::memory_order_acquire)) co_await fiber::yield_now();
    c.a_thread = std::this_thread::get_id();
    // Woken by the running task: b goes to this worker's LIFO slot.
    std::move(c.b_waker).wake();
    // Now keep this worker without awaiting, until b has run. Only another
    // worker can run it. The limit only turns a failure into a message
    // instead of a hang.
    const auto woke = std::chrono::steady_clock::now();
    while (!c.b_ran.load(std::memory_order_acquire) &&
           std::chrono::steady_clock::now() - woke < 10s) {
        std::this_thread::yield();
    }
    c.b_waited = std::chrono::steady_clock::now() - woke;
}

}  // namespace

TEST(Lifo, AWokenTaskIsNotStrandedBehindALongTask) {
    // Four workers, whatever FIBER_WORKERS says: with one, nobody else
    // could take b, by design.
    LifoStrandCase c;
    auto [executor, spawner] = fiber::new_executor_and_spawner({.workers = 4});
    spawner.spawn(lifo_strand_b(c));
    spawner.spawn(lifo_strand_a(c));
    executor.run();
    ASSERT_TRUE(c.b_ran.load());
    EXPECT_NE(c.b_thread, c.a_thread)
        << "b waited " << std::chrono::duration_cast<std::chrono::milliseconds>(c.b_waited).count()
        << " ms in the LIFO slot of a worker busy with one long task, while three workers "
           "were idle; it ran only after that task gave its worker back";
}
