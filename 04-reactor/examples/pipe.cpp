// A task waits for a pipe to become readable while another thread writes
// to it now and then. The task does not block its thread: the reactor
// watches the pipe and wakes the task when data arrives. (On Windows the
// "pipe" is a connected pair of sockets: IOCP readiness works on sockets.)
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <thread>

#include "common/args.hpp"
#include "common/os.hpp"
#include "fiber/async_fd.hpp"
#include "fiber/block_on.hpp"

using namespace std::chrono_literals;

namespace {

void write_message(fiber::common::native_handle h, const std::string& text) {
#ifdef _WIN32
    ::send(h, text.data(), static_cast<int>(text.size()), 0);
#else
    [[maybe_unused]] auto n = ::write(h, text.data(), text.size());
#endif
}

fiber::Task<int> read_messages(fiber::common::native_handle read_end) {
    fiber::AsyncFd pipe(read_end);
    int reads = 0;
    char buffer[256];
    for (;;) {
        // Suspends until the reactor reports the pipe readable.
        std::size_t n = co_await pipe.read(std::as_writable_bytes(std::span(buffer)));
        if (n == 0) break;  // the writer closed its end
        ++reads;
        std::cout << "read " << n << " bytes: " << std::string(buffer, n) << std::endl;
    }
    std::cout << "end of stream after " << reads << " reads" << std::endl;
    co_return reads;
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--count", "--ms"}, "[--count N] [--ms MILLISECONDS]");
    const long count = args.number("--count", 5);
    const auto pause = std::chrono::milliseconds(args.number("--ms", 100));
    try {
        auto [read_end, write_end] = fiber::common::make_pipe();
        std::thread writer([count, pause, w = write_end] {
            for (long i = 1; i <= count; ++i) {
                std::this_thread::sleep_for(pause);  // a slow producer, on its own thread
                write_message(w, "message " + std::to_string(i));
            }
            fiber::common::close_handle(w);
        });
        int reads = fiber::block_on(read_messages(read_end));
        writer.join();
        std::cout << "done: " << reads << " messages" << std::endl;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
