// One worker thread's own state: its local run queue, its LIFO slot, its
// Parker, and the counts it keeps to itself. The loop that uses them is in
// worker.cpp; executor.cpp needs the struct for wakes and the Waker count.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "fiber/parker.hpp"
#include "fiber/run_queue.hpp"
#include "fiber/scheduler.hpp"

namespace fiber::detail {

// Only its own thread touches the plain fields, except where noted.
struct Worker {
    Scheduler* scheduler = nullptr;
    Parker parker;
    // Where this worker naps while it watches the LIFO slots (nap()). Not
    // `parker`: a napper's wake may come late, after the worker has parked
    // in idle_, and would wake it there with nobody having taken it out.
    Parker nap_parker;
    // Tasks made ready on this worker. Thieves take from it (see RunQueue).
    RunQueue<TaskHeader> queue;
    // The task the running task woke last: it runs next, while what the
    // two share is still in this core's cache (a message and its reply).
    // Filled only by this thread; emptied by this thread, or by a thief
    // when the running task has kept this worker for a whole search (it
    // computes without awaiting, or blocks its thread): see steal_lifo().
    // Both take it with an exchange, so exactly one of them gets the task.
    std::atomic<TaskHeader*> lifo = nullptr;
    unsigned lifo_runs = 0;  // tasks run from `lifo` in a row
    // Tasks run, for the periodic looks (reactor, injection). Written by
    // this thread only; thieves read it to tell a worker that is stuck in
    // one task (the same tick at two looks) from a busy one.
    std::atomic<unsigned> tick = 0;
    // A thief's notes: each other worker's tick when we last saw a task in
    // its LIFO slot. Sized when the worker is made; ours alone.
    std::vector<unsigned> seen_tick;
    std::uint32_t rng = 0;          // picks the first victim to steal from
    TaskHeader* current = nullptr;  // the task being resumed, for current_waker()
    // Counted in the Scheduler's idle_state_ as searching. Set by this
    // thread, or by the thread that unparks or starts this worker (under
    // the mutex, before the Parker or the thread start hands it over).
    bool searching = false;
    // Changes to refs_ this worker has put off, added at the end of each
    // step of a task (settle()): the running unit of a task that suspends
    // or ends (-1), Wakers dropped here (-1), a yield's re-queued task (+1,
    // settled in the same step). A yield then leaves refs_, a cache line
    // every worker shares, untouched. Only a -1 may wait longer than its
    // step: see waker_created().
    std::int64_t unsettled = 0;
};

// The worker whose loop is on this thread's stack (nested block_on: the
// innermost one). Its scheduler is the one current_waker() and timers use.
// constinit: no dynamic initialisation, so no wrapper call on each use.
extern constinit thread_local Worker* t_worker;

}  // namespace fiber::detail
