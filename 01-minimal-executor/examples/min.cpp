// The smallest program: spawn one task, run the executor until it is done.
#include <cstdio>
#include <exception>
#include <iostream>

#include "fiber/executor.hpp"

fiber::Task<> demo() {
    std::cout << "done demo" << std::endl;
    co_return;
}

fiber::Task<> hello() {
    std::cout << "Hello world" << std::endl;
    co_await demo();  // runs demo() to the end before continuing
}

int main() {
    try {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(hello());
        executor.run();  // returns when no task is ready
        std::cout << "Bye" << std::endl;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
