cmake_minimum_required(VERSION 3.25)
# Runs one example and checks its output (cmake -P; called by CTest).
#
# The .expect file beside the example: lines starting with '#' are comments,
# a line 'args: ...' gives the command-line arguments, and every other line
# is a regular expression that some line of the output must match, in order.
#
# EMULATOR, when set, is the command (a list) that runs PROGRAM: wine-run in
# the mingw build.
file(STRINGS "${EXPECT}" lines)
set(args "")
set(patterns "")
foreach(line IN LISTS lines)
    if(line MATCHES "^#" OR line STREQUAL "")
        continue()
    elseif(line MATCHES "^args:(.*)$")
        separate_arguments(args UNIX_COMMAND "${CMAKE_MATCH_1}")
    else()
        list(APPEND patterns "${line}")
    endif()
endforeach()

get_filename_component(name "${PROGRAM}" NAME_WE)
message("---- ${name} ${args}")
execute_process(COMMAND ${EMULATOR} "${PROGRAM}" ${args}
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} exited with ${rc}")
endif()

# Each pattern must match a line after the line the previous one matched.
string(REPLACE "\r" "" out "${out}")
string(REPLACE ";" "\\;" out "${out}")
string(REPLACE "\n" ";" out_lines "${out}")
set(next 0)
list(LENGTH out_lines count)
foreach(pattern IN LISTS patterns)
    set(found FALSE)
    while(next LESS count)
        list(GET out_lines ${next} line)
        math(EXPR next "${next} + 1")
        if(line MATCHES "${pattern}")
            set(found TRUE)
            break()
        endif()
    endwhile()
    if(NOT found)
        message(FATAL_ERROR "${name}: no output line matches '${pattern}' (in order)")
    endif()
endforeach()
