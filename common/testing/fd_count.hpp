// Counts this process's open descriptors (handles on Windows), so a test
// can prove that shutdown closed everything it opened.
#pragma once

#include <cstddef>

#ifdef _WIN32
#include "common/windows.hpp"
#else
#include <dirent.h>
#endif

namespace fiber::common {

inline std::size_t open_descriptors() {
#ifdef _WIN32
    DWORD count = 0;
    GetProcessHandleCount(GetCurrentProcess(), &count);
    return count;
#else
#ifdef __linux__
    const char* dir_path = "/proc/self/fd";
#else
    const char* dir_path = "/dev/fd";
#endif
    std::size_t count = 0;
    if (DIR* dir = opendir(dir_path)) {
        while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
        closedir(dir);
        --count;  // the descriptor opendir itself holds
    }
    return count;
#endif
}

}  // namespace fiber::common
