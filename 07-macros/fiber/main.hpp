// FIBER_MAIN { ... }: the original's fiber_main!. Defines main(), which
// runs the body as a task on a runtime with the default number of workers
// (FIBER_WORKERS, else one per hardware thread) and returns when the body
// has finished; tasks it spawned and that still wait are then destroyed,
// as block_on does.
#pragma once

#include <span>

#include "fiber/block_on.hpp"
#include "fiber/task.hpp"

namespace fiber {

/// The program's arguments as main() received them; args()[0] is its name.
/// Empty outside a FIBER_MAIN program.
std::span<char* const> args() noexcept;

/// Sets the code a FIBER_MAIN program exits with (0 unless set). A body
/// ends with `co_return fiber::exit_code(3);` to exit with 3: a coroutine's
/// promise cannot accept both `co_return;` and `co_return 3;` (C++ allows
/// return_void or return_value, not both), so the body is a plain Task<>
/// and the code is passed beside it; `co_return f();` with a void f() is
/// valid in a Task<>.
void exit_code(int code) noexcept;

namespace detail {

/// What main() does: runs `body` and returns the exit code. An exception
/// that escapes the body is printed as "fiber: uncaught exception: <what>"
/// on stderr, and the code is 1.
int run_main(int argc, char** argv, Task<> (*body)()) noexcept;

}  // namespace detail

}  // namespace fiber

/// `FIBER_MAIN { co_await ...; }` defines main(). The body is a coroutine
/// (a fiber::Task<>): it may co_await, co_return nothing, or
/// `co_return fiber::exit_code(n);`. Its arguments: fiber::args().
#define FIBER_MAIN                                                      \
    static ::fiber::Task<> fiber_main_body();                           \
    int main(int argc, char** argv) {                                   \
        return ::fiber::detail::run_main(argc, argv, &fiber_main_body); \
    }                                                                   \
    static ::fiber::Task<> fiber_main_body()
