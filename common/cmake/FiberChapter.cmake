# fiber_chapter(): builds one chapter from its folder alone.
#
# Every chapter's CMakeLists.txt is the same single call, so that file never
# shows up in a chapter diff. Names come from the folder: 04-reactor gives the
# prefix 04, the library 04_fiber, the programs 04_sleep, 04_tests, 04_bench.
#
#   fiber/*.cpp      the runtime library (header-only while there is none)
#   examples/X.cpp   one program each; examples/X.expect lists the output it
#                    must print (see run_example.cmake) and registers it with
#                    CTest under the labels "example" and NN, and with the tour
#   tests/*.cpp      one GoogleTest binary, each test labelled NN; with
#                    fiber_chapter(TEST_WORKERS 1 4), every test runs once per
#                    count, named NN/wK/..., with FIBER_WORKERS=K set (the
#                    default worker count of new_executor_and_spawner)
#   tests/*.py       end-to-end tests that run the examples, labelled NN
#   tests/consumer/  a project that uses fiber::fiber; a test builds and runs it
#   bench/*.cpp      one Google Benchmark binary
set(FIBER_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(fiber_chapter)
    cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "TEST_WORKERS")
    get_filename_component(dir "${CMAKE_CURRENT_SOURCE_DIR}" NAME)
    string(SUBSTRING "${dir}" 0 2 nn)

    file(GLOB lib_sources CONFIGURE_DEPENDS fiber/*.cpp)
    if(lib_sources)
        add_library(${nn}_fiber STATIC ${lib_sources})
        set(scope PUBLIC)
    else()
        add_library(${nn}_fiber INTERFACE)
        set(scope INTERFACE)
    endif()
    target_include_directories(${nn}_fiber ${scope} "${CMAKE_CURRENT_SOURCE_DIR}")
    target_link_libraries(${nn}_fiber ${scope} fiber_common)

    file(GLOB examples CONFIGURE_DEPENDS examples/*.cpp)
    if(NOT FIBER_BUILD_EXAMPLES)
        set(examples "")
    endif()
    foreach(src IN LISTS examples)
        get_filename_component(name "${src}" NAME_WE)
        add_executable(${nn}_${name} "${src}")
        set_target_properties(${nn}_${name} PROPERTIES OUTPUT_NAME ${name})
        target_link_libraries(${nn}_${name} PRIVATE ${nn}_fiber)
        fiber_add_example_test(${nn} ${name} "${CMAKE_CURRENT_SOURCE_DIR}/examples/${name}.expect")
    endforeach()
    fiber_add_tour_step(${nn} ${dir} "${examples}")

    file(GLOB tests CONFIGURE_DEPENDS tests/*.cpp)
    if(FIBER_BUILD_TESTS AND tests)
        add_executable(${nn}_tests ${tests})
        target_link_libraries(${nn}_tests PRIVATE ${nn}_fiber fiber_testing GTest::gtest_main)
        # gtest.h precompiled once for every chapter (common/CMakeLists.txt).
        target_precompile_headers(${nn}_tests REUSE_FROM fiber_test_pch)
        if(FIBER_UNITY_TESTS)
            # Six test files compiled as one: the runtime's headers are
            # parsed, and their inline code generated, once per batch instead
            # of once per file (a third less compile time under the
            # sanitizers). The default preset leaves it off, so that a test
            # file that misses an include of its own still fails there.
            set_target_properties(${nn}_tests PROPERTIES
                UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 6)
        endif()
        if(NOT arg_TEST_WORKERS)
            gtest_discover_tests(${nn}_tests
                TEST_PREFIX "${nn}/"
                DISCOVERY_MODE PRE_TEST
                DISCOVERY_TIMEOUT 120
                PROPERTIES LABELS ${nn} TIMEOUT ${FIBER_TEST_TIMEOUT})
        endif()
        foreach(workers IN LISTS arg_TEST_WORKERS)
            gtest_discover_tests(${nn}_tests
                TEST_PREFIX "${nn}/w${workers}/"
                DISCOVERY_MODE PRE_TEST
                DISCOVERY_TIMEOUT 120
                PROPERTIES LABELS ${nn} TIMEOUT ${FIBER_TEST_TIMEOUT}
                    ENVIRONMENT FIBER_WORKERS=${workers})
        endforeach()
    endif()

    # tests/*.py: end-to-end tests that start the chapter's programs as
    # processes (echo_server, then echo_client against it). Each script gets
    # the programs' directory, their file suffix (.exe or none) and the
    # emulator that runs them (wine-run in the Windows build). A script that
    # cannot run somewhere prints only "skipped: <why>", and CTest counts it so.
    file(GLOB scripts CONFIGURE_DEPENDS tests/*.py)
    if(FIBER_BUILD_TESTS AND scripts)
        find_package(Python3 REQUIRED COMPONENTS Interpreter)
        foreach(script IN LISTS scripts)
            get_filename_component(name "${script}" NAME_WE)
            add_test(NAME ${nn}/${name}
                COMMAND "${Python3_EXECUTABLE}" "${script}" "${CMAKE_CURRENT_BINARY_DIR}"
                    "${CMAKE_EXECUTABLE_SUFFIX}" ${CMAKE_CROSSCOMPILING_EMULATOR})
            set_tests_properties(${nn}/${name} PROPERTIES
                LABELS ${nn} TIMEOUT ${FIBER_TEST_TIMEOUT}
                SKIP_REGULAR_EXPRESSION "^skipped: ")
        endforeach()
    endif()

    # tests/consumer/: a project of its own that uses fiber::fiber, configured,
    # built and run by a test (see fiber_add_consumer_tests below).
    if(FIBER_BUILD_TESTS AND EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/tests/consumer/CMakeLists.txt")
        fiber_add_consumer_tests(${nn})
    endif()

    file(GLOB benches CONFIGURE_DEPENDS bench/*.cpp)
    if(FIBER_BUILD_BENCH AND benches)
        add_executable(${nn}_bench ${benches})
        target_link_libraries(${nn}_bench PRIVATE ${nn}_fiber fiber_alloc_counter
                              benchmark::benchmark_main)
    endif()
endfunction()

# Registers an example with CTest (ctest --preset examples runs them all,
# quietly). The tests run in the order they were added (each depends on the
# one before), chapter by chapter, as in the tour.
function(fiber_add_example_test nn name expect_file)
    if(NOT EXISTS "${expect_file}")
        message(FATAL_ERROR "${expect_file} is missing: every example lists its expected output")
    endif()
    set(test ${nn}/example/${name})
    add_test(NAME ${test}
        COMMAND "${CMAKE_COMMAND}"
            "-DPROGRAM=$<TARGET_FILE:${nn}_${name}>"
            "-DEXPECT=${expect_file}"
            "-DEMULATOR=${CMAKE_CROSSCOMPILING_EMULATOR}"
            -P "${FIBER_CMAKE_DIR}/run_example.cmake")
    set_tests_properties(${test} PROPERTIES LABELS "example;${nn}" TIMEOUT ${FIBER_TEST_TIMEOUT})
    get_property(previous GLOBAL PROPERTY FIBER_LAST_EXAMPLE)
    if(previous)
        set_tests_properties(${test} PROPERTIES DEPENDS ${previous})
    endif()
    set_property(GLOBAL PROPERTY FIBER_LAST_EXAMPLE ${test})
endfunction()

# The tour (cmake --workflow --preset tour) is the target "tour": it builds
# only the examples and runs them, chapter by chapter, each chapter's heading
# followed by each example's output, and stops at the first output that does
# not match its .expect file. Each chapter has a step NN_tour that depends on
# its own examples and on the previous chapter's step, so the build of later
# chapters goes on while the first ones already run. The steps use the
# terminal (USES_TERMINAL), so the output appears as it is printed.
function(fiber_add_tour_step nn dir examples)
    set(commands "")
    set(heading "-DCHAPTER=${dir}")
    foreach(src IN LISTS examples)
        get_filename_component(name "${src}" NAME_WE)
        list(APPEND commands COMMAND "${CMAKE_COMMAND}"
            "-DPROGRAM=$<TARGET_FILE:${nn}_${name}>"
            "-DEXPECT=${CMAKE_CURRENT_SOURCE_DIR}/examples/${name}.expect"
            "-DEMULATOR=${CMAKE_CROSSCOMPILING_EMULATOR}"
            "-DSOURCE_DIR=${PROJECT_SOURCE_DIR}"
            ${heading}
            -P "${FIBER_CMAKE_DIR}/run_example.cmake")
        set(heading "")
    endforeach()
    if(NOT commands)
        return()
    endif()
    add_custom_target(${nn}_tour ${commands} USES_TERMINAL VERBATIM
        WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
        COMMENT "The examples of ${dir}")
    foreach(src IN LISTS examples)
        get_filename_component(name "${src}" NAME_WE)
        add_dependencies(${nn}_tour ${nn}_${name})
    endforeach()
    if(NOT TARGET tour)
        add_custom_target(tour)
    endif()
    get_property(previous GLOBAL PROPERTY FIBER_LAST_TOUR_STEP)
    if(previous)
        add_dependencies(${nn}_tour ${previous})
    endif()
    add_dependencies(tour ${nn}_tour)
    set_property(GLOBAL PROPERTY FIBER_LAST_TOUR_STEP ${nn}_tour)
endfunction()

# fiber_export_library(dir): fiber::fiber, the library another project links,
# is the runtime of the last chapter, dir. A program that links it gets the
# chapter and the repository root on its include path ("fiber/task.hpp",
# "common/log.hpp"), threads (and ws2_32 on Windows) through fiber_common,
# C++20, and with GCC the flag that makes symmetric transfer a tail call
# (FiberOptions.cmake): its own coroutines need it as much as the runtime's.
function(fiber_export_library dir)
    string(SUBSTRING "${dir}" 0 2 nn)
    get_target_property(type ${nn}_fiber TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY")
        set(scope INTERFACE)
    else()
        set(scope PUBLIC)
    endif()
    target_compile_features(${nn}_fiber ${scope} cxx_std_20)
    target_compile_options(${nn}_fiber INTERFACE
        $<$<CXX_COMPILER_ID:GNU>:-foptimize-sibling-calls>)
    add_library(fiber::fiber ALIAS ${nn}_fiber)
endfunction()

# The tests NN/consumer/add_subdirectory and NN/consumer/fetchcontent
# configure tests/consumer/ as a separate project, in the two ways README.md
# shows, build it, and run its program (run_consumer.cmake), whose output must
# match tests/consumer/consumer.expect. The consumer gets this build's
# compiler, toolchain file, build type and flags: the warnings, the
# sanitizers and, on Windows, -static, as every program here. It downloads
# nothing: GoogleTest and Google Benchmark are switched off for it.
function(fiber_add_consumer_tests nn)
    get_directory_property(compile_options COMPILE_OPTIONS)
    get_directory_property(link_options LINK_OPTIONS)
    list(JOIN compile_options " " compile_flags)
    list(JOIN link_options " " link_flags)
    string(TOUPPER "${CMAKE_BUILD_TYPE}" config)
    set(args
        "-DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}"
        "-DCMAKE_CXX_FLAGS=${CMAKE_CXX_FLAGS} ${compile_flags}"
        "-DCMAKE_EXE_LINKER_FLAGS=${CMAKE_EXE_LINKER_FLAGS} ${link_flags}"
        "-DFIBER_POLLER=${FIBER_POLLER}"
        -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON
        -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
        -DFETCHCONTENT_FULLY_DISCONNECTED=ON)
    if(config)
        list(APPEND args "-DCMAKE_CXX_FLAGS_${config}=${CMAKE_CXX_FLAGS_${config}}")
    endif()
    if(CMAKE_TOOLCHAIN_FILE)
        list(APPEND args "-DCMAKE_TOOLCHAIN_FILE=${CMAKE_TOOLCHAIN_FILE}")
    else()
        list(APPEND args "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}")
    endif()
    if(FIBER_KQUEUE_ROOT)
        list(APPEND args "-DFIBER_KQUEUE_ROOT=${FIBER_KQUEUE_ROOT}")
    endif()

    # The settings go to the script in a file: a list on a command line
    # would be split apart by add_test.
    set(settings "${CMAKE_CURRENT_BINARY_DIR}/consumer-settings.cmake")
    string(CONCAT content
        "set(CONSUMER_ARGS [==[${args}]==])\n"
        "set(CONSUMER_SOURCE [==[${CMAKE_CURRENT_SOURCE_DIR}/tests/consumer]==])\n"
        "set(FIBER_SOURCE_DIR [==[${PROJECT_SOURCE_DIR}]==])\n"
        "set(GENERATOR [==[${CMAKE_GENERATOR}]==])\n"
        "set(MAKE_PROGRAM [==[${CMAKE_MAKE_PROGRAM}]==])\n"
        "set(SUFFIX [==[${CMAKE_EXECUTABLE_SUFFIX}]==])\n"
        "set(EMULATOR [==[${CMAKE_CROSSCOMPILING_EMULATOR}]==])\n")
    file(WRITE "${settings}" "${content}")

    foreach(mode IN ITEMS add_subdirectory fetchcontent)
        set(test ${nn}/consumer/${mode})
        add_test(NAME ${test}
            COMMAND "${CMAKE_COMMAND}" "-DSETTINGS=${settings}" "-DMODE=${mode}"
                "-DBINARY=${CMAKE_CURRENT_BINARY_DIR}/consumer-${mode}"
                -P "${FIBER_CMAKE_DIR}/run_consumer.cmake")
        # A build of its own: alone, so that it slows no timed test down,
        # and with more time than a test that only runs.
        set_tests_properties(${test} PROPERTIES LABELS ${nn} RUN_SERIAL TRUE TIMEOUT 600)
    endforeach()
endfunction()
