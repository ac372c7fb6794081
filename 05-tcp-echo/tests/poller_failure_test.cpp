// A poller that fails for good: its wait returns an error other than EINTR.
// Every task waiting on the reactor is woken, and its await throws that
// error, which names the call; run() ends with it too. Nothing aborts.
// The test breaks a live epoll descriptor on purpose (dup2 of /dev/null
// over it: epoll_wait then fails with EINVAL), so it runs on Linux only.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <system_error>

#include "common/os.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"

#ifdef __linux__
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#endif

using namespace std::chrono_literals;

namespace {

#ifdef __linux__

// This process's epoll descriptors: /proc/self/fd links them to an
// anonymous inode of that name.
std::set<int> epoll_descriptors() {
    std::set<int> found;
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return found;
    while (dirent* entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        const std::string link = std::string("/proc/self/fd/") + entry->d_name;
        char target[64] = {};
        if (readlink(link.c_str(), target, sizeof target - 1) > 0 &&
            std::string(target) == "anon_inode:[eventpoll]") {
            found.insert(std::stoi(entry->d_name));
        }
    }
    closedir(dir);
    return found;
}

struct WaitOutcome {
    // Outlives the executor: the reader task uses it until it ends.
    std::optional<fiber::AsyncFd> in;
    std::string sleep_error;
    std::string read_error;
    int broken = 0;  // how many epoll descriptors were broken (1 expected)
};

fiber::Task<> read_forever(fiber::AsyncFd& in, WaitOutcome& out) {
    std::byte buffer[16];
    try {
        (void)co_await in.read(buffer);  // nobody writes: only the failure ends it
        out.read_error = "the read returned";
    } catch (const std::system_error& e) {
        out.read_error = e.what();
    }
}

fiber::Task<> break_the_poller(fiber::Spawner spawner, fiber::common::native_handle r,
                               const std::set<int>& before, WaitOutcome& out) {
    out.in.emplace(r);  // starts the reactor; watched by its epoll before we break it
    for (int fd : epoll_descriptors()) {
        if (before.count(fd)) continue;
        const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || ::dup2(null, fd) < 0) continue;  // the reactor's epoll is gone
        ::close(null);
        ++out.broken;
    }
    spawner.spawn(read_forever(*out.in, out));
    try {
        // A new earliest timer makes a thread blocked in the old epoll
        // descriptor return; its next wait is on /dev/null, and fails.
        co_await fiber::sleep_for(1h);
        out.sleep_error = "the sleep ended";
    } catch (const std::system_error& e) {
        out.sleep_error = e.what();
    }
    // Waits after the failure fail at once, rather than hang.
    try {
        co_await fiber::sleep_for(1h);
        out.sleep_error += "; a second sleep ended";
    } catch (const std::system_error&) {
    }
}

#endif

}  // namespace

TEST(PollerFailure, AFailingWaitReachesTheWaitersAndRun) {
#ifndef __linux__
    GTEST_SKIP() << "breaks an epoll descriptor on purpose: Linux only";
#else
    const std::set<int> before = epoll_descriptors();
    const auto [reader, writer] = fiber::common::make_pipe();
    WaitOutcome out;  // before the executor: destroyed after it
    std::string run_error;
    {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(break_the_poller(spawner, reader, before, out));
        try {
            executor.run();
        } catch (const std::system_error& e) {
            run_error = e.what();
        }
    }
    fiber::common::close_handle(writer);
    ASSERT_EQ(out.broken, 1);
    EXPECT_EQ(out.sleep_error.rfind("epoll_wait", 0), 0u) << out.sleep_error;
    EXPECT_EQ(out.read_error.rfind("epoll_wait", 0), 0u) << out.read_error;
    EXPECT_EQ(run_error.rfind("epoll_wait", 0), 0u) << run_error;
#endif
}
