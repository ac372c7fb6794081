// macros: the original's join!, select! and a timeout, as functions that
// run their tasks at the same time, each on whichever worker is free. A
// loser of select is cancelled: its destructor has run (and says so)
// before select returns, as the original shows the futures select! drops.
#include <chrono>
#include <cstdio>
#include <string>
#include <variant>

#include "fiber/join.hpp"
#include "fiber/main.hpp"
#include "fiber/select.hpp"
#include "fiber/sleep.hpp"
#include "fiber/timeout.hpp"

using namespace std::chrono_literals;

// Prints when it is destroyed: shows that a cancelled task unwinds.
struct Noisy {
    const char* name;
    ~Noisy() { std::printf("%s: dropped\n", name); }
};

fiber::Task<int> after(std::chrono::milliseconds delay, int value) {
    co_await fiber::sleep_for(delay);
    co_return value;
}

fiber::Task<std::string> slow(const char* name) {
    Noisy noisy{name};
    co_await fiber::sleep_for(1h);  // cancelled long before
    co_return "slow";
}

FIBER_MAIN {
    // join: both run at once, so this takes about 20 ms, not 30.
    const auto t0 = std::chrono::steady_clock::now();
    auto [a, b] = co_await fiber::join(after(20ms, 1), after(10ms, 2));
    const auto took = std::chrono::steady_clock::now() - t0;
    std::printf("join: %d + %d = %d\n", a, b, a + b);
    std::printf(
        "join: took %ld ms\n",
        static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));

    // select: the first to finish wins; the loser is cancelled and has
    // unwound before select returns.
    auto first = co_await fiber::select(slow("select loser"), after(10ms, 7));
    std::printf("select: branch %u won with %d\n", static_cast<unsigned>(first.index()),
                std::get<1>(first));

    // timeout: a select between the task and a sleep.
    try {
        (void)co_await fiber::timeout(10ms, slow("timed-out task"));
    } catch (const fiber::TimedOut&) {
        std::printf("timeout: timed out\n");
    }
    int in_time = co_await fiber::timeout(1s, after(1ms, 5));
    std::printf("timeout: %d in time\n", in_time);
}
