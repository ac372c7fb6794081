# Warnings, the symmetric-transfer flag, and sanitizers, for every chapter.
find_package(Threads REQUIRED)

add_compile_options(-Wall -Wextra -Wpedantic)
if(FIBER_WERROR)
    add_compile_options(-Werror)
endif()

# Symmetric transfer (await_suspend returning a handle) is only a tail call
# when the compiler makes it one. Clang does at every -O level; GCC 12 needs
# sibling-call optimization, which it only turns on at -O2. Without it a loop
# of one million co_awaits overflows the stack. TUTORIAL.md, chapter 1.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-foptimize-sibling-calls)
endif()

if(FIBER_SANITIZE STREQUAL "address")
    set(san -fsanitize=address,undefined -fno-sanitize-recover=all)
    add_compile_options(${san} -fno-omit-frame-pointer)
    add_link_options(${san})
    if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
        # Clang 14 fails to compile coroutines under UBSan's function check
        # ("Cannot represent a difference across sections").
        add_compile_options(-fno-sanitize=function)
    endif()
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        # With GCC 12, ASan's use-after-scope check, and UBSan's null and
        # alignment checks when combined with ASan, each block the tail call
        # above. The asan preset uses Clang, which keeps every check.
        add_compile_options(-fno-sanitize-address-use-after-scope -fno-sanitize=null,alignment)
    endif()
elseif(FIBER_SANITIZE STREQUAL "thread")
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        message(FATAL_ERROR
            "GCC's ThreadSanitizer build loses the tail call of symmetric "
            "transfer, whatever the flags, and the stack test overflows. "
            "Configure with clang++ (the tsan preset does).")
    endif()
    add_compile_options(-fsanitize=thread)
    add_link_options(-fsanitize=thread)
elseif(NOT FIBER_SANITIZE STREQUAL "")
    message(FATAL_ERROR "FIBER_SANITIZE must be empty, address or thread")
endif()

if(WIN32)
    # One self-contained .exe per program: wine then needs no MinGW DLLs.
    add_link_options(-static)
endif()

# The reactor's poller (chapter 4 on): epoll on Linux, kqueue on macOS and
# the BSDs, IOCP on Windows. -DFIBER_POLLER=kqueue also works on Linux with
# a kqueue compatibility library (libkqueue) installed.
if(WIN32)
    set(poller_default iocp)
elseif(APPLE OR CMAKE_SYSTEM_NAME MATCHES "BSD|DragonFly")
    set(poller_default kqueue)
else()
    set(poller_default epoll)
endif()
set(FIBER_POLLER ${poller_default} CACHE STRING "Reactor backend: epoll, kqueue or iocp")
set_property(CACHE FIBER_POLLER PROPERTY STRINGS epoll kqueue iocp)
if(NOT FIBER_POLLER MATCHES "^(epoll|kqueue|iocp)$")
    message(FATAL_ERROR "FIBER_POLLER must be epoll, kqueue or iocp, not '${FIBER_POLLER}'")
endif()
string(TOUPPER "${FIBER_POLLER}" poller_upper)
add_compile_definitions(FIBER_POLLER_${poller_upper})
message(STATUS "fiber: reactor poller is ${FIBER_POLLER}")
