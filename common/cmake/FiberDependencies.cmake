# GoogleTest and Google Benchmark come from the system (Debian: googletest,
# libbenchmark-dev). Where find_package does not find them, FetchContent
# downloads them; set FETCHCONTENT_SOURCE_DIR_GOOGLETEST (or _BENCHMARK) to a
# local source tree to skip the download, as the mingw preset does with
# Debian's /usr/src/googletest.
include(FetchContent)

if(FIBER_BUILD_TESTS)
    find_package(GTest QUIET)
    if(NOT GTest_FOUND)
        message(STATUS "GoogleTest not found on the system: using FetchContent")
        FetchContent_Declare(googletest
            URL https://github.com/google/googletest/archive/refs/tags/v1.12.1.tar.gz)
        set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
        set(gtest_force_shared_crt ON CACHE BOOL "" FORCE)
        set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)  # the tests use GoogleTest alone
        FetchContent_MakeAvailable(googletest)
        # GoogleTest 1.11 and later define these names themselves.
        if(NOT TARGET GTest::gtest)
            add_library(GTest::gtest ALIAS gtest)
            add_library(GTest::gtest_main ALIAS gtest_main)
        endif()
    endif()
    include(GoogleTest)
endif()

if(FIBER_BUILD_BENCH)
    find_package(benchmark QUIET)
    if(NOT benchmark_FOUND)
        message(STATUS "Google Benchmark not found on the system: using FetchContent")
        FetchContent_Declare(benchmark
            URL https://github.com/google/benchmark/archive/refs/tags/v1.7.1.tar.gz)
        set(BENCHMARK_ENABLE_TESTING OFF CACHE BOOL "" FORCE)
        set(BENCHMARK_ENABLE_INSTALL OFF CACHE BOOL "" FORCE)
        FetchContent_MakeAvailable(benchmark)
    endif()
endif()
