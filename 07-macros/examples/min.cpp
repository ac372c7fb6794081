// min: the original's first example, in its final form. FIBER_MAIN starts
// the runtime and runs the body as a task; spawn() starts another task,
// and awaiting its handle gives what it returned.
#include <chrono>
#include <cstdio>

#include "fiber/join_handle.hpp"
#include "fiber/main.hpp"
#include "fiber/sleep.hpp"

using namespace std::chrono_literals;

fiber::Task<int> demo() {
    co_await fiber::sleep_for(10ms);
    std::printf("done demo\n");
    co_return 42;
}

FIBER_MAIN {
    std::printf("Hello world\n");
    fiber::JoinHandle<int> handle = fiber::spawn(demo());
    int answer = co_await handle;
    std::printf("%d\n", answer);
}
