// The worker loop: where a worker finds its next task, and what it does
// when there is none. In order: its LIFO slot, its own queue, a batch from
// the injection queue; then it searches (the injection queue again, and
// the other workers' queues, from which it steals half), and at last it
// parks. With the shared-queue option there is only the injection queue.
#include "fiber/worker.hpp"

#include "fiber/budget.hpp"
#include "fiber/reactor.hpp"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <mutex>
#include <utility>

namespace fiber::detail {

constinit thread_local Worker* t_worker = nullptr;

namespace {

// How long an idle worker looks for work before it parks. Parking and
// unparking costs two system calls and a few microseconds of latency; a
// task woken within this window is picked up without them. Go's scheduler
// spins in the same range; Tokio does not spin at all but searches the
// other workers' queues once before it parks.
constexpr auto kSpin = std::chrono::microseconds(30);
// How long a worker that watches the LIFO slots sleeps between two looks
// (nap()): a task stranded behind a long one waits about two of them.
constexpr auto kLifoLook = std::chrono::microseconds(500);

// How many tasks a worker runs between two looks at the reactor, and at
// the injection queue before its own queue. Tokio's number
// (event_interval): a task that waits for I/O, or that another thread
// woke, waits this long at most, even when the local queues never run dry.
constexpr unsigned kPollInterval = 61;

// How many tasks in a row a worker takes from its LIFO slot. Two tasks that
// wake each other would otherwise keep the slot to themselves forever and
// starve the queue behind it. Tokio's number (MAX_LIFO_POLLS_PER_TICK).
constexpr unsigned kMaxLifoRuns = 3;

// Tells the CPU we are in a spin loop: it saves power, and a hyperthread
// sibling gets the core (about 40 to 140 cycles on current x86).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

}  // namespace

void Scheduler::work(Worker& w) {
    Worker* outer = std::exchange(t_worker, &w);
    TaskHeader* task = next_task(w);
    while (task) {
        // A worker started or unparked to search found this task: it is no
        // longer searching (and may hand the search on).
        if (w.searching) stop_searching(w);
        // Now and then, collect the I/O that is ready and the timers that
        // are due, even while there is work, so that queues that never run
        // dry cannot starve the tasks waiting for I/O. find_work() does it
        // too, before it spins.
        // Only we write tick: a load and a store, no read-modify-write.
        const unsigned tick = w.tick.load(std::memory_order_relaxed) + 1;
        w.tick.store(tick, std::memory_order_relaxed);
        if (tick % kPollInterval == 0) {
            if (Reactor* reactor = polled_reactor()) reactor->poll_ready();
        }
        TaskHeader* again = run_task(w, *task);
        if (again && exit_.load(std::memory_order_relaxed)) {
            std::lock_guard lock(mutex_);  // run() is over: leave it queued for the next
            push_locked(*again, false);
            again = nullptr;
        }
        task = again ? again : next_task(w);
    }
    drain(w);
    t_worker = outer;
}

TaskHeader* Scheduler::run_task(Worker& w, TaskHeader& task) {
    // We popped it: it is ours until we store kIdle or queue it again.
    assert(task.state.load(std::memory_order_relaxed) == TaskState::kScheduled);
    task.state.store(TaskState::kRunning, std::memory_order_relaxed);
    w.current = &task;
    reset_budget();
    task.resume_at.resume();  // runs until the task suspends or finishes
    return after_step(w, task);
}

// What a worker does once the task it resumed is back: it finished, or it
// suspended (woken meanwhile or not). Returns the task if it must run again
// at once.
TaskHeader* Scheduler::after_step(Worker& w, TaskHeader& task) {
    --w.unsettled;  // the task's running unit
    if (&task == root_) {
        if (root_top_.done()) {
            // block_on's task has returned: the run is over, whatever else
            // is still queued or waiting (block_on destroys it). Its frame
            // stays: block_on takes the result from it.
            settle(w);
            std::lock_guard lock(mutex_);
            finish_locked();
            return nullptr;
        }
    } else if (auto& cell = static_cast<TaskCell&>(task); cell.top.done()) {
        // Its last step. Nobody else can reach the task now: it gave no
        // Waker away that could still fire (it did not suspend), so the
        // state word needs no last store. Still the current task while it
        // ends: a task woken on its way out (its JoinHandle's awaiter)
        // goes to the LIFO slot and runs next, as a reply does.
        task_done(cell);
        w.current = nullptr;
        settle(w);
        return nullptr;
    }
    w.current = nullptr;
    // acquire: if another thread woke it (kNotified), we see what that
    // thread wrote before it woke the task.
    TaskState s = task.state.load(std::memory_order_acquire);
    // release on success: the frame's writes reach whoever wakes it next.
    // From that instant another worker may run it: we must not touch it.
    // acquire on failure: a wake came in between, as above.
    if (s == TaskState::kRunning &&
        task.state.compare_exchange_strong(s, TaskState::kIdle, std::memory_order_release,
                                           std::memory_order_acquire)) {
        settle(w);
        return nullptr;
    }
    // kNotified: woken while it ran (a yield, or a fast reactor). Its
    // Waker's unit becomes the queued task's.
    task.state.store(TaskState::kScheduled, std::memory_order_relaxed);
    settle(w);
    // It used up its budget (fiber/budget.hpp): it yielded so that what
    // came due meanwhile runs first. Collect the reactor's news now, not at
    // the next turn of kPollInterval, so that a timer or a socket that is
    // due goes ahead of it; and the tasks woken from outside go first too.
    const bool spent = budget_spent();
    if (spent) {
        if (Reactor* reactor = polled_reactor()) reactor->poll_ready();
    }
    // Nothing else is ready here (a hint: a task queued just now elsewhere
    // waits one turn, and its waker unparked a worker for it): run it again
    // at once, with no queue and no worker woken. A yield on one worker
    // then costs no atomic read-modify-write at all.
    if (shared_queue_) {
        if (queued_.load(std::memory_order_relaxed) == 0) return &task;
        std::lock_guard lock(mutex_);
        push_locked(task);
        return nullptr;
    }
    if (spent && queued_.load(std::memory_order_relaxed) > 0) {
        std::lock_guard lock(mutex_);
        push_locked(task);  // behind them
        return nullptr;
    }
    if (!w.lifo.load(std::memory_order_relaxed) && w.queue.empty() &&
        queued_.load(std::memory_order_relaxed) == 0) {
        return &task;
    }
    // Not to the LIFO slot: a task that yields asks to let the others run
    // first, and the slot would run it again next. To the back, as Tokio.
    push_local(w, task);
    return nullptr;
}

TaskHeader* Scheduler::next_task(Worker& w) {
    if (exit_.load(std::memory_order_relaxed)) return nullptr;
    if (shared_queue_) {
        {
            std::lock_guard lock(mutex_);
            if (TaskHeader* task = pop_locked(w)) return task;
        }
        return find_work(w);
    }
    // Every kPollInterval tasks, the injection queue goes first: local work
    // that never runs dry must not starve tasks woken from other threads.
    // (Not before the first task: tick 0 is no turn of the interval.)
    const unsigned tick = w.tick.load(std::memory_order_relaxed);
    if (tick % kPollInterval == 0 && tick != 0 && queued_.load(std::memory_order_relaxed) > 0) {
        std::lock_guard lock(mutex_);
        if (TaskHeader* task = pop_locked(w)) return task;
    }
    if (TaskHeader* task = take_lifo(w)) {
        if (w.lifo_runs < kMaxLifoRuns) {
            ++w.lifo_runs;
            return task;
        }
        push_local(w, *task);  // enough in a row: to the back of the queue
    }
    w.lifo_runs = 0;
    if (TaskHeader* task = w.queue.pop()) return task;
    if (queued_.load(std::memory_order_relaxed) > 0) {
        if (TaskHeader* task = take_injected(w)) return task;
    }
    return find_work(w);
}

// Empties w's own LIFO slot. Look before the exchange: an empty slot costs
// no locked instruction. A thief may empty it between the two; the
// exchange decides. With one worker there is no thief: no exchange.
TaskHeader* Scheduler::take_lifo(Worker& w) {
    TaskHeader* task = w.lifo.load(std::memory_order_relaxed);
    if (!task) return nullptr;
    if (workers_.size() == 1) {
        w.lifo.store(nullptr, std::memory_order_relaxed);
        return task;
    }
    return w.lifo.exchange(nullptr, std::memory_order_acquire);
}

// Puts a task made ready on worker w. `lifo`: the running task woke it, so
// it runs next, and the task it displaces from the slot goes to the queue.
void Scheduler::schedule_local(Worker& w, TaskHeader& task, bool lifo) {
    TaskHeader* queued = &task;
    if (lifo) {
        if (workers_.size() == 1) {  // no thief, and nobody to wake
            queued = w.lifo.load(std::memory_order_relaxed);
            w.lifo.store(&task, std::memory_order_relaxed);
            if (queued) push_local(w, *queued);
            return;
        }
        // We get back our own last fill, or nothing if a thief took it.
        // Release: a thief that takes the task (acquire) sees it as we
        // left it. Sequentially consistent: the fence that notify_if_needed()
        // puts between a push and its look at the idle counts.
        queued = w.lifo.exchange(&task, std::memory_order_seq_cst);
    }
    if (queued) {
        push_local(w, *queued);  // notifies, as below
        return;
    }
    // The tempting shortcut wakes nobody: "this worker runs it as soon as
    // the running task suspends". But the running task may not suspend
    // for a long time (it computes, or blocks its thread), and then the
    // task waits here while other workers sleep. So the slot is announced
    // like any push: someone searching (or napping, see nap()), or every
    // worker busy, costs one fence and one load; only when all idle
    // workers are asleep is one woken, and it stays to watch the slots.
    notify_if_needed(true);
}

void Scheduler::push_local(Worker& w, TaskHeader& task) {
    w.queue.push(&task, [this](TaskHeader** tasks, std::uint32_t n) {
        // The ring is full: half of it and the new task go to the
        // injection queue, under one lock, with one worker woken for them.
        std::lock_guard lock(mutex_);
        for (std::uint32_t i = 0; i < n; ++i) push_locked(*tasks[i], false);
        notify_locked();
    });
    notify_if_needed();
}

// Moves a batch of tasks from the injection queue into w's (empty) queue,
// and returns one of them. One lock for the batch instead of one a task.
TaskHeader* Scheduler::take_injected(Worker& w) {
    TaskHeader* first;
    {
        std::lock_guard lock(mutex_);
        const std::size_t queued = queued_.load(std::memory_order_relaxed);
        if (queued == 0) return nullptr;
        // A fair share for each worker (Tokio's formula), at most half the
        // ring, so that the tasks it wakes still fit.
        std::size_t n = std::min<std::size_t>(
            {queued, queued / workers_.size() + 1, RunQueue<TaskHeader>::capacity() / 2});
        first = head_;
        TaskHeader* last = first;
        for (std::size_t i = 1; i < n; ++i) last = last->next_ready;
        head_ = last->next_ready;
        if (!head_) tail_ = nullptr;
        queued_.store(queued - n, std::memory_order_relaxed);
        for (TaskHeader* t = first->next_ready; n > 1; t = t->next_ready, --n) {
            const bool pushed = w.queue.try_push(t);  // only we push, and there is room
            assert(pushed);
            (void)pushed;
        }
    }
    return first;
}

void Scheduler::drain(Worker& w) {
    if (shared_queue_) return;
    // run() is over. What this worker still holds goes to the injection
    // queue, where the next run() or the Executor's destructor finds it.
    // A thief racing us takes each task or leaves it: pop() decides.
    std::lock_guard lock(mutex_);
    if (TaskHeader* task = w.lifo.exchange(nullptr, std::memory_order_acquire)) {
        push_locked(*task, false);
    }
    while (TaskHeader* task = w.queue.pop()) push_locked(*task, false);
}

bool Scheduler::any_queued_work() const noexcept {
    for (const auto& w : workers_) {
        if (!w->queue.empty()) return true;
    }
    return false;
}

bool Scheduler::any_local_work() const noexcept {
    for (const auto& w : workers_) {
        if (!w->queue.empty() || w->lifo.load(std::memory_order_relaxed)) return true;
    }
    return false;
}

// The pusher's half of the parking protocol (see find_work()). The task is
// in a queue already; is a worker asleep that should come and take it?
void Scheduler::notify_if_needed(bool lifo_fill) {
    if (workers_.size() == 1) return;  // nobody else to wake
    // seq_cst fence between our store (the task, published in the ring) and
    // our load (the counts): see the argument in find_work(). A fill's
    // exchange was sequentially consistent itself, and so is our load.
    if (!lifo_fill) std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::uint32_t s = idle_state_.load(std::memory_order_seq_cst);
    // Someone searches and will find it, or every worker is awake: nobody
    // to wake, and no lock taken. That is the path of a busy executor. A
    // napper counts as searching; a task in a queue should not wait for
    // its nap to end, but a fill of a LIFO slot is what it watches for.
    if (s % kOneAsleep != 0) {
        if (!lifo_fill) {
            if (Worker* napper = napper_.load(std::memory_order_relaxed))
                napper->nap_parker.unpark();
        }
        return;
    }
    if (s / kOneAsleep == 0) return;
    std::lock_guard lock(mutex_);
    notify_locked();
}

void Scheduler::stop_searching(Worker& w) {
    w.searching = false;
    // Were we the last searcher? Then a push may have woken nobody because
    // we searched: if any work is left where a thief could take it, wake
    // one worker to search in our place. The pattern is the parker's in
    // find_work(): our count change, a fence, then a look at the queues.
    if (idle_state_.fetch_sub(kOneSearching) % kOneAsleep != 1) return;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queued_.load(std::memory_order_relaxed) > 0 || any_local_work()) {
        std::lock_guard lock(mutex_);
        notify_locked();
    }
}

// Searching: look at the injection queue and the other workers' queues,
// without parking. A task found here is ours to run.
TaskHeader* Scheduler::search(Worker& w) {
    // Tasks that the reactor poll in find_work() woke land in our queue.
    if (TaskHeader* task = w.queue.pop()) return task;
    if (queued_.load(std::memory_order_relaxed) > 0) {
        if (TaskHeader* task = take_injected(w)) return task;
    }
    return steal(w);
}

TaskHeader* Scheduler::steal(Worker& w) {
    const std::size_t n = workers_.size();
    if (n == 1) return nullptr;
    // Start at a random victim (xorshift32), so that several thieves do
    // not all fall on the same worker.
    std::uint32_t x = w.rng ? w.rng : static_cast<std::uint32_t>(n) * 2654435761u + 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w.rng = x;
    for (std::size_t i = 0; i < n; ++i) {
        Worker& victim = *workers_[(x + i) % n];
        if (&victim == &w) continue;
        if (TaskHeader* task = victim.queue.steal_into(w.queue)) return task;
    }
    return nullptr;
}

// The last look of a search, before it parks: a task waiting in another
// worker's LIFO slot. Taken only if that worker has run no other task since
// our previous look (its tick has not moved), a whole search ago: it is
// stuck in one long task. A slot that a message and its reply pass through
// (filled and emptied a million times a second) is left alone, as Go's
// thieves leave `runnext` to a running P for a moment before they steal it.
TaskHeader* Scheduler::steal_lifo(Worker& w) {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        Worker& victim = *workers_[i];
        if (&victim == &w || !victim.lifo.load(std::memory_order_relaxed)) continue;
        const unsigned tick = victim.tick.load(std::memory_order_relaxed);
        // A tick we had not seen: look again at the end of the next search.
        if (std::exchange(w.seen_tick[i], tick) != tick) continue;
        // The owner may take it back at this instant (next_task), or fill
        // it again: each side exchanges, so exactly one gets each task.
        // acquire: pairs with the release of the fill in schedule_local().
        if (TaskHeader* task = victim.lifo.exchange(nullptr, std::memory_order_acquire)) {
            return task;
        }
    }
    return nullptr;
}

// Only LIFO slots hold tasks, and their owners are running: in all
// likelihood a task and the one it woke pass messages, and the owner will
// run the woken one in a moment. Spinning until it does would take a core
// from them; parking until the next fill would cost a wake-up per message.
// So one worker naps: it sleeps kLifoLook, still counted as searching (a
// fill wakes nobody), then searches again, and steal_lifo() takes the
// task of an owner whose tick has not moved since its last look. A push
// to a queue does not wait for the nap to end: it unparks the napper
// (notify_if_needed(), notify_locked()).
void Scheduler::nap(Worker& w) {
    // Our napper_ store (made under mutex_), then this fence, then a look
    // at the queues; a pusher publishes its task, fences, then reads
    // napper_. Either it unparks us or we see its task (Dekker, as above).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!any_queued_work() && !exit_.load(std::memory_order_relaxed))
        w.nap_parker.park_for(kLifoLook);
    napper_.store(nullptr, std::memory_order_relaxed);
}

// The idle path, all in one place: nothing was ready. Search a little,
// then park until a wake (or the end of run()) unparks us.
TaskHeader* Scheduler::find_work(Worker& w) {
    if (shared_queue_) return find_work_shared(w);
    Reactor* reactor;
    {
        std::lock_guard lock(mutex_);
        if (!w.searching) {
            w.searching = true;  // while we search, pushes leave the parked workers alone
            idle_state_.fetch_add(kOneSearching);
        }
        reactor = reactor_.get();
    }
    // Collect what the reactor has, on this thread: the tasks it wakes are
    // queued here, and, as we count as searching, no parked worker is
    // woken for them. Only if there is nothing does the reactor thread
    // wait in the poller (chapter 5).
    if (reactor) reactor->poll_before_sleeping();
    while (!exit_.load(std::memory_order_relaxed)) {
        const auto give_up = std::chrono::steady_clock::now() + kSpin;
        for (unsigned i = 1; !exit_.load(std::memory_order_relaxed); ++i) {
            if (TaskHeader* task = search(w)) return task;  // work() ends our search
            cpu_relax();
            if (i % 64 == 0 && std::chrono::steady_clock::now() > give_up) break;
        }
        if (TaskHeader* task = steal_lifo(w)) return task;
        std::unique_lock lock(mutex_);
        // The tempting version checks the queues, then parks, and loses a
        // task queued in between. Here we first register as idle, then
        // look at every queue once more, and only then park:
        //  - the injection queue: every push to it holds mutex_, as we do;
        //    a push after our unlock finds us in idle_ and unparks us, and
        //    the Parker keeps that token even if it comes before park().
        //  - the local queues, pushed without the lock: a pusher publishes
        //    its task, then (seq_cst fence) reads idle_state_; we change
        //    idle_state_, then (seq_cst fence) read the queues. The two
        //    fences come one before the other: either the pusher reads our
        //    change and wakes a worker, or we read its task and do not
        //    park. Both may happen; neither is impossible (Dekker's
        //    argument, as in notify_if_needed() and stop_searching()).
        //  - the LIFO slots, filled without the lock: the same argument,
        //    as a fill announces itself as a push does (schedule_local()).
        //    A full slot is watched, not left: we nap (below) unless
        //    another worker does already.
        if (exit_.load(std::memory_order_relaxed)) break;
        if (TaskHeader* task = pop_locked(w)) return task;
        idle_.push_back(&w);  // reserved: cannot throw
        idle_state_.fetch_add(kOneAsleep - (w.searching ? kOneSearching : 0));
        w.searching = false;
        std::atomic_thread_fence(std::memory_order_seq_cst);
        const bool queued = any_queued_work();
        Worker* none = nullptr;
        if (queued || (any_local_work() &&
                       napper_.compare_exchange_strong(none, &w, std::memory_order_relaxed))) {
            // Not idle after all. We are still at the back of idle_: we
            // have held the lock since we pushed ourselves.
            idle_.pop_back();
            idle_state_.fetch_add(kOneSearching - kOneAsleep);
            w.searching = true;
            if (!queued) {
                lock.unlock();
                nap(w);
            }
            continue;  // search (and steal) again
        }
        lock.unlock();
        w.parker.park();
        // Unparked by a push (which counted us as searching, so that no
        // other worker is woken until we find work or park again), or by
        // the end of run(): the loop decides which.
    }
    if (w.searching) {
        w.searching = false;
        idle_state_.fetch_sub(kOneSearching);
    }
    return nullptr;
}

// find_work() with the shared queue: there is only the injection queue to
// look at, and every push to it holds the mutex.
TaskHeader* Scheduler::find_work_shared(Worker& w) {
    Reactor* reactor;
    {
        std::lock_guard lock(mutex_);
        if (!w.searching) {
            w.searching = true;  // while we search, wakes leave the parked workers alone
            idle_state_.fetch_add(kOneSearching);
        }
        reactor = reactor_.get();
    }
    if (reactor) reactor->poll_before_sleeping();
    const auto give_up = std::chrono::steady_clock::now() + kSpin;
    for (unsigned i = 1; !exit_.load(std::memory_order_relaxed); ++i) {
        if (queued_.load(std::memory_order_relaxed) > 0) {  // a hint; the lock decides
            std::lock_guard lock(mutex_);
            if (TaskHeader* task = pop_locked(w)) return task;
        }
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > give_up) break;
    }
    std::unique_lock lock(mutex_);
    for (;;) {
        // Register as idle under the mutex that every push holds; a push
        // after our unlock finds us in idle_ and unparks us, and the Parker
        // keeps that token even if it comes before park() does.
        if (exit_.load(std::memory_order_relaxed)) break;
        if (TaskHeader* task = pop_locked(w)) return task;
        idle_.push_back(&w);  // reserved: cannot throw
        idle_state_.fetch_add(kOneAsleep - (w.searching ? kOneSearching : 0));
        w.searching = false;
        lock.unlock();
        w.parker.park();
        lock.lock();  // unparked by a push (which counted us as searching) or by the end
    }
    if (w.searching) {
        w.searching = false;
        idle_state_.fetch_sub(kOneSearching);
    }
    return nullptr;
}

}  // namespace fiber::detail
