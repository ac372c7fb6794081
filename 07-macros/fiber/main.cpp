// The main() behind FIBER_MAIN: run the body, report what escapes it.
#include "fiber/main.hpp"

#include "fiber/cancel.hpp"

#include <atomic>
#include <cstdio>
#include <exception>

namespace fiber {

namespace {

// Set once, before the body starts, and only read after: the workers that
// read it are started after the write.
std::span<char* const> g_args;

// The body may set it from any worker; main reads it after run() has
// joined them. Relaxed would do; the default is as cheap here.
std::atomic<int> g_exit_code{0};

}  // namespace

std::span<char* const> args() noexcept { return g_args; }

void exit_code(int code) noexcept { g_exit_code.store(code); }

namespace detail {

int run_main(int argc, char** argv, Task<> (*body)()) noexcept {
    g_args = std::span<char* const>(argv, argc > 0 ? static_cast<std::size_t>(argc) : 0);
    try {
        detail::block_on(body(), 0);  // the default number of workers
    } catch (const Cancelled& e) {    // not a std::exception (cancel.hpp): named all the same
        std::fprintf(stderr, "fiber: uncaught exception: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fiber: uncaught exception: %s\n", e.what());
        return 1;
    } catch (...) {
        std::fprintf(stderr, "fiber: uncaught exception: (not a std::exception)\n");
        return 1;
    }
    return g_exit_code.load();
}

}  // namespace detail

}  // namespace fiber
