// A watchdog for a test whose failure would be a hang (an await that never
// ends): if the test is still running when the limit passes, it names the
// test on stderr and ends the process, so the failure says what hung
// instead of leaving CTest to kill a silent process. Destroying it (the
// test is over) disarms it.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

class Watchdog {
public:
    // 30 s: far more than any of these tests takes under a sanitizer on a
    // busy machine, and well under CTest's limit for one test.
    explicit Watchdog(std::chrono::seconds limit = std::chrono::seconds(30))
        : name_(test_name()), thread_([this, limit] { watch(limit); }) {}
    ~Watchdog() {
        {
            std::lock_guard lock(mutex_);
            over_ = true;
        }
        over_changed_.notify_one();
        thread_.join();
    }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

private:
    static std::string test_name() {
        const auto* info = testing::UnitTest::GetInstance()->current_test_info();
        return info ? std::string(info->test_suite_name()) + "." + info->name() : "a test";
    }
    void watch(std::chrono::seconds limit) {
        std::unique_lock lock(mutex_);
        // A condition, not a sleep: the test's end disarms us at once.
        if (over_changed_.wait_for(lock, limit, [this] { return over_; })) return;
        std::fprintf(stderr, "watchdog: %s still running after %lld s: it hangs\n", name_.c_str(),
                     static_cast<long long>(limit.count()));
        std::fflush(stderr);
        std::_Exit(1);  // no destructors: the hung threads still use what they would free
    }

    const std::string name_;
    std::mutex mutex_;  // guards over_
    std::condition_variable over_changed_;
    bool over_ = false;   // the test has ended
    std::thread thread_;  // last: starts once the members above exist
};
