// Tasks that return values: block_on runs a task and hands back its result.
#include <cstdio>
#include <exception>
#include <iostream>

#include "fiber/block_on.hpp"

fiber::Task<int> demo(int i) { co_return i + 42; }

fiber::Task<int> doubled_demo(int i) {
    int a = co_await demo(i);  // the child's co_return value
    co_return a * 2;
}

int main() {
    try {
        for (int i = 0; i < 4; ++i) {
            int result = fiber::block_on(doubled_demo(i));
            std::cout << "block_on(doubled_demo(" << i << ")) = " << result << std::endl;
        }
        std::cout << "Bye" << std::endl;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
