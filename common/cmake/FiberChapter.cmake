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
    # emulator that runs them (wine-run in the Windows build).
    file(GLOB scripts CONFIGURE_DEPENDS tests/*.py)
    if(FIBER_BUILD_TESTS AND scripts)
        find_package(Python3 REQUIRED COMPONENTS Interpreter)
        foreach(script IN LISTS scripts)
            get_filename_component(name "${script}" NAME_WE)
            add_test(NAME ${nn}/${name}
                COMMAND "${Python3_EXECUTABLE}" "${script}" "${CMAKE_CURRENT_BINARY_DIR}"
                    "${CMAKE_EXECUTABLE_SUFFIX}" ${CMAKE_CROSSCOMPILING_EMULATOR})
            set_tests_properties(${nn}/${name} PROPERTIES
                LABELS ${nn} TIMEOUT ${FIBER_TEST_TIMEOUT})
        endforeach()
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
