// Logging with thread names: one line at a time, prefixed with the name of
// the thread that wrote it, so that a reader can see which thread runs what.
#pragma once

#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>

namespace fiber::common {

inline std::string& thread_name_slot() {
    thread_local std::string name = "main";
    return name;
}

/// Names the calling thread in log lines ("main" unless set).
inline void set_thread_name(std::string name) { thread_name_slot() = std::move(name); }

inline const std::string& thread_name() { return thread_name_slot(); }

/// Prints "[thread] a b c" as one line on stdout; safe from any thread.
template <typename... Parts>
void log(const Parts&... parts) {
    std::ostringstream line;
    line << '[' << thread_name() << "] ";
    (line << ... << parts);
    line << '\n';
    static std::mutex mutex;  // whole lines, never interleaved characters
    std::lock_guard lock(mutex);
    std::cout << line.str() << std::flush;
}

}  // namespace fiber::common
