// A program that uses fiber as a library: it includes the runtime's headers
// as any of the examples do and links fiber::fiber (CMakeLists.txt beside).
#include <chrono>
#include <cstdio>

#include "fiber/join.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/main.hpp"
#include "fiber/sleep.hpp"

using namespace std::chrono_literals;

fiber::Task<int> answer() {
    co_await fiber::sleep_for(1ms);
    co_return 42;
}

FIBER_MAIN {
    fiber::JoinHandle<int> handle = fiber::spawn(answer());
    auto [a, b] = co_await fiber::join(answer(), answer());
    int c = co_await handle;
    std::printf("fiber::fiber works: %d %d %d\n", a, b, c);
}
