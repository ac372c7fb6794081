cmake_minimum_required(VERSION 3.25)
# Configures, builds and runs a project that uses fiber::fiber (cmake -P;
# called by CTest, see fiber_add_consumer_tests in FiberChapter.cmake).
#
# SETTINGS is the file that fiber_add_consumer_tests wrote: the consumer's
# source directory, the repository root, the generator, the arguments for
# the consumer's configure step, the program suffix and the emulator.
# MODE is how the consumer gets fiber (add_subdirectory or fetchcontent),
# BINARY its build directory. The program's output must match
# consumer.expect beside the consumer's CMakeLists.txt (run_example.cmake
# checks it).
include("${SETTINGS}")

function(step what)
    list(JOIN ARGN " " shown)
    message("$ ${shown}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "the consumer's ${what} failed (${rc}); its output is above")
    endif()
endfunction()

step(configure "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE}" -B "${BINARY}" -G "${GENERATOR}"
    "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}" "-DFIBER_SOURCE_DIR=${FIBER_SOURCE_DIR}"
    "-DFIBER_CONSUMER_MODE=${MODE}" ${CONSUMER_ARGS})
step(build "${CMAKE_COMMAND}" --build "${BINARY}")

set(PROGRAM "${BINARY}/consumer${SUFFIX}")
set(EXPECT "${CONSUMER_SOURCE}/consumer.expect")
include("${CMAKE_CURRENT_LIST_DIR}/run_example.cmake")
