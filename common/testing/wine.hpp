// Whether a test program runs under wine (the mingw build's tests do), so
// that a storm test can be made smaller there. Under wine every wait and
// wake of a thread, and every thread start, is a round trip to the
// wineserver process: a storm that takes seconds natively takes minutes.
// The smaller storm still races the same lines, only fewer times. On real
// Windows, and everywhere else, this is false.
#pragma once

#include "common/windows.hpp"

namespace fiber::common {

inline bool running_under_wine() {
#ifdef _WIN32
    // Wine's ntdll exports wine_get_version; Windows' does not.
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    return ntdll != nullptr && GetProcAddress(ntdll, "wine_get_version") != nullptr;
#else
    return false;
#endif
}

}  // namespace fiber::common
