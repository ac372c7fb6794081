cmake_minimum_required(VERSION 3.25)
# Runs one example and checks its output (cmake -P; called by CTest and by
# the tour, see FiberChapter.cmake).
#
# The .expect file beside the example: lines starting with '#' are comments,
# a line 'args: ...' gives the command-line arguments, and every other line
# is a regular expression that some line of the output must match, in order.
#
# EMULATOR, when set, is the command (a list) that runs PROGRAM: wine-run in
# the mingw build. CHAPTER, when set, is the chapter directory whose heading
# is printed first (the tour sets it for a chapter's first example).
# SOURCE_DIR, when set, is the repository root: the command line shown is
# then relative to it, as a reader would type it there.
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

# The heading: the chapter's title in TUTORIAL.md ("## Chapter 1: ..."), if any.
if(CHAPTER)
    set(heading "${CHAPTER}/")
    string(REGEX MATCH "^[0-9]+" number "${CHAPTER}")
    math(EXPR number "${number}")
    if(SOURCE_DIR AND EXISTS "${SOURCE_DIR}/TUTORIAL.md")
        file(STRINGS "${SOURCE_DIR}/TUTORIAL.md" title REGEX "^## Chapter ${number}: " LIMIT_COUNT 1)
        if(title)
            string(REGEX REPLACE "^## " "" title "${title}")
            set(heading "${title} (${CHAPTER}/)")
        endif()
    endif()
    message("\n==== ${heading}")
endif()

get_filename_component(name "${PROGRAM}" NAME_WE)
set(shown "${PROGRAM}")
set(expect_shown "${EXPECT}")
if(SOURCE_DIR)
    file(RELATIVE_PATH relative "${SOURCE_DIR}" "${PROGRAM}")
    if(NOT relative MATCHES "^\\.\\./")
        set(shown "./${relative}")
    endif()
    file(RELATIVE_PATH relative "${SOURCE_DIR}" "${EXPECT}")
    if(NOT relative MATCHES "^\\.\\./")
        set(expect_shown "${relative}")
    endif()
endif()
list(JOIN args " " args_text)
string(STRIP "$ ${shown} ${args_text}" command_text)
message("${command_text}")
# The output appears as the program prints it (the sleeps of chapters 3 and 4
# can be watched), and is kept for the check below.
execute_process(COMMAND ${EMULATOR} "${PROGRAM}" ${args}
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
    ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} exited with ${rc}, not 0 (its output is above)")
endif()

# Each pattern must match a line after the line the previous one matched.
string(REPLACE "\r" "" out "${out}")
string(REPLACE ";" "\\;" escaped "${out}")
string(REPLACE "\n" ";" out_lines "${escaped}")
set(next 0)
set(report "")
set(failed FALSE)
list(LENGTH out_lines count)
foreach(pattern IN LISTS patterns)
    set(found FALSE)
    if(NOT failed)
        while(next LESS count)
            list(GET out_lines ${next} line)
            math(EXPR next "${next} + 1")
            if(line MATCHES "${pattern}")
                set(found TRUE)
                break()
            endif()
        endwhile()
    endif()
    if(found)
        string(APPEND report "  found    ${pattern}\n")
    elseif(NOT failed)
        string(APPEND report "  MISSING  ${pattern}\n")
        set(failed TRUE)
    else()
        string(APPEND report "  skipped  ${pattern}\n")
    endif()
endforeach()
if(failed)
    # Indented lines are printed as they are (CMake rewraps the others).
    string(REGEX REPLACE "\n$" "" out "${out}")
    string(REPLACE "\n" "\n  | " shown_out "${out}")
    message(FATAL_ERROR "${name}: its output does not match ${expect_shown}\n"
        "  expected, in order, a line that matches each pattern:\n${report}"
        "  actual output (stdout):\n  | ${shown_out}\n")
endif()
