// CPU time used by the whole process, every thread included: what a timer
// thread or a reactor costs, as opposed to how long the caller waited.
#pragma once

#ifdef _WIN32
#include "common/windows.hpp"
#else
#include <sys/resource.h>
#endif

namespace fiber::common {

/// User plus system CPU seconds of this process so far.
inline double process_cpu_seconds() {
#ifdef _WIN32
    FILETIME created, exited, kernel, user;
    if (!GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user)) return 0;
    auto seconds = [](FILETIME t) {  // counted in 100 ns units
        ULARGE_INTEGER ticks;
        ticks.LowPart = t.dwLowDateTime;
        ticks.HighPart = t.dwHighDateTime;
        return static_cast<double>(ticks.QuadPart) * 1e-7;
    };
    return seconds(kernel) + seconds(user);
#else
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](timeval t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
#endif
}

}  // namespace fiber::common
