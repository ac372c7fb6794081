# Toolchain file for the Windows cross-build (the mingw preset): 64-bit
# mingw-w64 GCC, and wine to run the programs.
#
# The compiler is the "posix" variant: its libstdc++ has std::thread and
# std::mutex (on winpthreads); GCC 12's "win32" variant has neither.
# FiberOptions.cmake links every program with -static, so an .exe needs no
# MinGW DLLs beside it.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(FIBER_MINGW_TRIPLE x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${FIBER_MINGW_TRIPLE}-gcc-posix)    # GoogleTest's project() enables C
set(CMAKE_CXX_COMPILER ${FIBER_MINGW_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${FIBER_MINGW_TRIPLE}-windres)

# Headers, libraries and CMake packages come from the mingw-w64 sysroot only,
# never from the host; programs (the build tools) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${FIBER_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# CTest runs every program (tests, examples, GoogleTest's test discovery)
# through wine-run, with a wine prefix of its own inside the build directory.
set(CMAKE_CROSSCOMPILING_EMULATOR
    "${CMAKE_CURRENT_LIST_DIR}/wine-run;--prefix;${CMAKE_BINARY_DIR}/wine-prefix")
