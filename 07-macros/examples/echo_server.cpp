// echo_server: a TCP echo server that runs until it is stopped, with what a
// real server needs around the echo loop: a task per connection, one line
// logged per connection closed (bytes echoed, and why), a back-off when the
// process runs out of descriptors, and a graceful stop on SIGINT or SIGTERM
// (Ctrl+C or Ctrl+Break on Windows): stop accepting, give live connections
// a second to finish, exit 0.
// The connections run on a pool of workers (--threads N).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/args.hpp"
#include "fiber/executor.hpp"
#include "fiber/sleep.hpp"
#include "fiber/tcp.hpp"

#ifndef _WIN32
#include <csignal>
#include <pthread.h>
#include <thread>
#endif

using namespace std::chrono_literals;

namespace {

const char* const kUsage =
    "[--address 127.0.0.1:7878] [--connections N] [--threads N]\n"
    "  --connections N: exit after serving N connections (0: right after listening)\n"
    "  --threads N: worker threads (default: one per hardware thread)";

// What the tasks share. They run on several workers: the counts and flags
// are atomic, and the listener, which the accept loop uses while the
// shutdown task may close it, is used under a mutex. The signal thread (or
// Windows' console control handler) below only spawns a task.
struct Server {
    fiber::Executor& executor;
    fiber::Spawner spawner;
    std::mutex mutex{};                            // guards listener
    std::optional<fiber::TcpListener> listener{};  // bound by the first task
    long limit = -1;                               // --connections; -1: no limit
    std::atomic<int> live = 0;                     // connections being served
    std::atomic<bool> stopping = false;            // a signal came: accept no more
    std::string error{};  // what ended the server, if it failed (the accept loop's)

    void close_listener() {
        std::lock_guard lock(mutex);
        if (listener) listener->close();
    }
};

// One whole line on stdout: tasks on several workers print at once.
void say(const std::string& line) {
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    std::cout << line << std::endl;
}

fiber::Task<> serve(Server& server, fiber::TcpStream stream) {
    const std::string peer = stream.peer_address().to_string();
    std::size_t echoed = 0;
    std::string why = "end of stream";
    try {
        // Nagle's algorithm would hold back the tail of an echo until the
        // client acknowledges the rest, and the client delays that by 40 ms.
        stream.set_nodelay();
        std::byte buffer[4096];  // a page: plenty for small messages, little per idle client
        while (std::size_t n = co_await stream.read(buffer)) {
            co_await stream.write_all(std::span(buffer).first(n));
            echoed += n;
        }
    } catch (const std::exception& e) {  // a reset or a broken pipe ends this connection only
        why = e.what();
    }
    say(peer + " closed: " + std::to_string(echoed) + " bytes echoed, " + why);
    --server.live;
}

bool out_of_descriptors(const std::error_code& code) {
#ifdef _WIN32
    return code.value() == WSAEMFILE;
#else
    return code == std::errc::too_many_files_open ||
           code == std::errc::too_many_files_open_in_system;
#endif
}

fiber::Task<> accept_loop(Server& server, fiber::SocketAddress address) {
    std::string bound;
    try {
        std::lock_guard lock(server.mutex);
        server.listener = fiber::TcpListener::bind(address);
        bound = server.listener->local_address().to_string();
    } catch (const std::exception& e) {
        server.error = e.what();
        co_return;
    }
    say("listening on " + bound);
    auto backoff = 0ms;  // 0 while accepting works
    for (long served = 0; !server.stopping && served != server.limit;) {
        std::optional<fiber::Accept> accept;
        {
            // shut_down() sets `stopping`, then closes under this mutex:
            // seen false here, the listener is still open. The accept holds
            // its own reference to the socket, so it waits without the lock,
            // and a close meanwhile wakes it with an error.
            std::lock_guard lock(server.mutex);
            if (server.stopping) break;
            accept.emplace(server.listener->accept());
        }
        std::optional<fiber::Accepted> next;
        try {
            next.emplace(co_await std::move(*accept));
        } catch (const std::system_error& e) {
            if (server.stopping) break;  // the shutdown task closed the listener
            if (!out_of_descriptors(e.code())) {
                server.error = e.what();
                server.executor.stop();  // exit 1 now, without waiting for the others
                break;
            }
        }
        if (!next) {
            // Out of descriptors. The connection stays queued, so accepting
            // again at once fails again at once: a loop at 100 % CPU. Wait,
            // longer each time (10 ms doubling to 1 s), for a connection to
            // close and free a descriptor. Logged once, not at every retry.
            if (backoff == 0ms) say("out of descriptors: accept backs off");
            backoff = std::clamp(backoff * 2, 10ms, 1000ms);
            co_await fiber::sleep_for(backoff);
            continue;
        }
        if (backoff != 0ms) say("accepting again");
        backoff = 0ms;
        ++served;
        ++server.live;
        server.spawner.spawn(serve(server, std::move(next->stream)));
    }
    server.close_listener();  // refuse newcomers; the live connections go on
}

// Spawned by the signal thread (on Windows, the console control handler);
// runs on the executor like every other task.
fiber::Task<> shut_down(Server& server) {
    say("stopping, connections open: " + std::to_string(server.live));
    server.stopping = true;
    server.close_listener();  // wakes accept() with an error
    for (int i = 0; i < 100 && server.live > 0; ++i) co_await fiber::sleep_for(10ms);
    if (server.live > 0) say("closing the " + std::to_string(server.live) + " left");
    server.executor.stop();  // the executor destroys their tasks, closing their sockets
}

#ifndef _WIN32
// SIGINT and SIGTERM without a signal handler. A handler interrupts
// whatever the thread was doing, so it may call only async-signal-safe
// functions: spawning a task (a mutex, an allocation) is not one. Instead
// the signals are blocked in every thread (a new thread inherits the mask,
// so block them before any starts) and this thread waits for them in
// sigwait(): an ordinary thread, which may call anything.
class SignalThread {
public:
    explicit SignalThread(Server& server) {
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGINT);
        sigaddset(&signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals, nullptr);
        thread_ = std::thread([this, &server, signals] {
            int signal = 0;
            sigwait(&signals, &signal);
            // Spawner::spawn may be called from any thread.
            if (!done_) server.spawner.spawn(shut_down(server));
        });
    }
    ~SignalThread() {  // wakes the thread with a signal of our own
        done_ = true;
        pthread_kill(thread_.native_handle(), SIGTERM);
        thread_.join();
    }

private:
    // Set by the destructor before it wakes the thread, read once after
    // sigwait() returns; the default (sequentially consistent) order is plenty.
    std::atomic<bool> done_{false};  // the server is finished: spawn nothing
    std::thread thread_;
};
#else
// Ctrl+C and Ctrl+Break. Windows has no signals: it calls a console control
// handler on a thread it creates for the call, an ordinary thread like the
// one above, which may spawn. The handler is a plain function, so it finds
// the server through target_. It spawns under the mutex, and the destructor
// unregisters it, then clears target_ under the same mutex: once the
// destructor returns, no handler can still be using the server.
class ConsoleCtrlHandler {
public:
    explicit ConsoleCtrlHandler(Server& server) {
        std::lock_guard lock(mutex_);  // a call that comes at once waits for target_
        if (!SetConsoleCtrlHandler(handler, TRUE)) {
            fiber::common::throw_error(int(GetLastError()), "SetConsoleCtrlHandler");
        }
        target_ = &server;
    }
    ~ConsoleCtrlHandler() {
        SetConsoleCtrlHandler(handler, FALSE);  // no new calls from here on
        std::lock_guard lock(mutex_);           // waits for a call under way
        target_ = nullptr;
    }

private:
    static BOOL WINAPI handler(DWORD event) noexcept {
        // Closing the window, logging off: the default handler ends the process.
        if (event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT) return FALSE;
        std::lock_guard lock(mutex_);
        if (!target_) return TRUE;  // stopping or finished: a second Ctrl+C is ignored
        try {
            target_->spawner.spawn(shut_down(*target_));  // from any thread
        } catch (...) {
            return FALSE;  // could not stop gracefully: let Windows end the process
        }
        target_ = nullptr;
        return TRUE;  // handled: the process goes on, and stops itself
    }
    static inline std::mutex mutex_;
    static inline Server* target_ = nullptr;  // guarded by mutex_
};
#endif

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv, {"--address", "--connections", "--threads"}, kUsage);
    std::string_view text = "127.0.0.1:7878";
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) != "--address") continue;
        if (i + 1 == argc) args.fail("--address needs an address");
        text = argv[i + 1];
    }
    std::optional<fiber::SocketAddress> address;
    try {
        address = fiber::SocketAddress::parse(text);
    } catch (const std::invalid_argument& e) {
        args.fail(e.what());
    }
    try {
        auto [executor, spawner] =
            fiber::new_executor_and_spawner(static_cast<std::size_t>(args.number("--threads", 0)));
        Server server{executor, spawner};
        server.limit = args.number("--connections", -1);
#ifndef _WIN32
        SignalThread signals(server);  // joined before the server and executor go
#else
        ConsoleCtrlHandler signals(server);  // unregistered before the server and executor go
#endif
        spawner.spawn(accept_loop(server, *address));
        executor.run();  // until the last connection closes, or stop()
        if (!server.error.empty()) throw std::runtime_error(server.error);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
