// FIBER_MAIN's main(): the exit code, and the report of an exception that
// escapes the body. Each case runs in a child process (fork), since the
// outcome is the process's exit status and what it wrote to stderr.
#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "fiber/join_handle.hpp"
#include "fiber/main.hpp"
#include "fiber/sleep.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/wait.h>
#include <unistd.h>
#define FIBER_HAVE_FORK 1
#endif

namespace {

struct Outcome {
    int status = -1;  // the exit code, or -1 if the child did not exit normally
    std::string err;  // what it wrote to stderr
};

// Runs run_main(argv, body), what FIBER_MAIN's main() runs, in a child.
Outcome run_in_child(fiber::Task<> (*body)(), std::vector<std::string> arguments) {
    Outcome out;
#ifdef FIBER_HAVE_FORK
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        ::dup2(pipe_fds[1], 2);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        std::vector<char*> argv;
        for (std::string& a : arguments) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int code =
            fiber::detail::run_main(static_cast<int>(arguments.size()), argv.data(), body);
        std::fflush(nullptr);
        ::_exit(code);
    }
    ::close(pipe_fds[1]);
    char buffer[256];
    for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;)
        out.err.append(buffer, n);
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFEXITED(status)) out.status = WEXITSTATUS(status);
#else
    (void)body;
    (void)arguments;
#endif
    return out;
}

fiber::Task<> returns_nothing() { co_await fiber::sleep_for(std::chrono::milliseconds(1)); }

fiber::Task<> returns_three() {
    auto h = fiber::spawn([]() -> fiber::Task<int> { co_return 3; }());
    co_return fiber::exit_code(co_await h);
}

fiber::Task<> throws() {
    co_await fiber::sleep_for(std::chrono::milliseconds(1));
    throw std::runtime_error("out of coffee");
}

// Awaits an aborted task and lets its Cancelled escape the body.
fiber::Task<> lets_cancelled_escape() {
    auto h = fiber::spawn([]() -> fiber::Task<int> {
        co_await fiber::sleep_for(std::chrono::hours(1));
        co_return 1;
    }());
    h.abort();
    (void)co_await h;
}

fiber::Task<> checks_arguments() {
    const auto args = fiber::args();
    const bool ok =
        args.size() == 3 && std::string(args[1]) == "--seconds" && std::string(args[2]) == "2";
    co_return fiber::exit_code(ok ? 0 : 9);
}

}  // namespace

#ifdef FIBER_HAVE_FORK
#define SKIP_WITHOUT_FORK()
#else
#define SKIP_WITHOUT_FORK() GTEST_SKIP() << "needs fork(): POSIX only"
#endif

TEST(Main, ABodyThatReturnsNothingExitsWithZero) {
    SKIP_WITHOUT_FORK();
    Outcome out = run_in_child(returns_nothing, {"prog"});
    EXPECT_EQ(out.status, 0);
    EXPECT_EQ(out.err, "");
}

TEST(Main, ABodyExitsWithTheCodeItSets) {
    SKIP_WITHOUT_FORK();
    EXPECT_EQ(run_in_child(returns_three, {"prog"}).status, 3);
}

TEST(Main, AnUncaughtExceptionIsPrintedAndExitsWithOne) {
    SKIP_WITHOUT_FORK();
    Outcome out = run_in_child(throws, {"prog"});
    EXPECT_EQ(out.status, 1);
    EXPECT_EQ(out.err, "fiber: uncaught exception: out of coffee\n");
}

// Cancelled is not a std::exception, and it is still reported by name.
TEST(Main, AnUncaughtCancelledIsPrintedAndExitsWithOne) {
    SKIP_WITHOUT_FORK();
    Outcome out = run_in_child(lets_cancelled_escape, {"prog"});
    EXPECT_EQ(out.status, 1);
    EXPECT_EQ(out.err, "fiber: uncaught exception: fiber: the task was cancelled\n");
}

TEST(Main, TheBodySeesTheArguments) {
    SKIP_WITHOUT_FORK();
    EXPECT_EQ(run_in_child(checks_arguments, {"prog", "--seconds", "2"}).status, 0);
}
