// Peak resident memory of this process, for the examples that show what a
// thread or a task costs.
#pragma once

#include <cstddef>

#ifdef _WIN32
#include "common/windows.hpp"
#include <psapi.h>
#else
#include <sys/resource.h>

#include <cstdlib>
#include <fstream>
#include <string>
#endif

namespace fiber::common {

/// The most physical memory this process has used so far, in bytes.
inline std::size_t peak_rss_bytes() {
#ifdef _WIN32
    PROCESS_MEMORY_COUNTERS counters{};
    if (!K32GetProcessMemoryInfo(GetCurrentProcess(), &counters, sizeof counters)) return 0;
    return counters.PeakWorkingSetSize;
#elif defined(__linux__)
    // VmHWM ("VmHWM:   31744 kB"), not getrusage's ru_maxrss: Linux carries
    // ru_maxrss across exec, so a program started by a large parent would
    // report the parent's peak. reset_peak_rss() resets VmHWM.
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("VmHWM:")) {
            return static_cast<std::size_t>(std::strtoull(line.c_str() + 6, nullptr, 10)) * 1024;
        }
    }
    return 0;
#else
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
#ifdef __APPLE__
    return static_cast<std::size_t>(usage.ru_maxrss);  // macOS reports bytes
#else
    return static_cast<std::size_t>(usage.ru_maxrss) * 1024;  // the BSDs report KiB
#endif
#endif
}

/// Starts a new peak: on Linux, writing 5 to /proc/self/clear_refs resets
/// the high-water mark that peak_rss_bytes() reads. Elsewhere the peak stays
/// the process's peak so far.
inline void reset_peak_rss() {
#ifdef __linux__
    std::ofstream("/proc/self/clear_refs") << "5";
#endif
}

}  // namespace fiber::common
