// Counts this process's open descriptors (handles on Windows), so a test
// can prove that shutdown closed everything it opened.
#pragma once

#include <cstddef>
#include <optional>

#ifdef _WIN32
#include "common/windows.hpp"
#else
#include <dirent.h>
#endif

namespace fiber::common {

/// This process's open descriptors (handles on Windows), or nullopt where
/// they cannot be counted: wine's GetProcessHandleCount always says 0, and
/// /proc/self/fd may be unreadable. A leak check then skips, rather than
/// passing with nothing checked.
inline std::optional<std::size_t> open_descriptors() {
#ifdef _WIN32
    DWORD count = 0;
    // A real Windows process always holds some handles; 0 means "not counted".
    if (!GetProcessHandleCount(GetCurrentProcess(), &count) || count == 0) return std::nullopt;
    return count;
#else
#ifdef __linux__
    const char* dir_path = "/proc/self/fd";
#else
    const char* dir_path = "/dev/fd";
#endif
    DIR* dir = opendir(dir_path);
    if (!dir) return std::nullopt;
    std::size_t count = 0;
    while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
    closedir(dir);
    return count - 1;  // not the descriptor opendir itself held
#endif
}

}  // namespace fiber::common
