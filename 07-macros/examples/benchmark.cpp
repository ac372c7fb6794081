// benchmark: the ladder's workloads on this runtime and, in the same run, on
// Asio's C++20 coroutines (awaitable, co_spawn), printed as one table. Each
// workload is written the way each library is meant to be used: a Spawner
// and Executor::run() here, co_spawn and io_context::run() there; join and
// select here, Asio's awaitable operators && and || there.
//
// Same work on both sides, in one process, one after the other: fiber with
// its default number of workers (--threads to change it), Asio with one
// io_context run by as many threads. block_on is the exception: both run it
// on the calling thread alone, as each library does it, fiber on the
// thread's own runtime, Asio on one io_context, each kept from one call to
// the next. Every figure is the wall time of a whole batch divided by its
// operations, the median of --repeat runs.
//
// Asio is found at build time (Debian: libasio-dev); without it, or in a
// cross build that does not find it, the table has fiber's column alone.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "common/args.hpp"
#include "fiber/block_on.hpp"
#include "fiber/executor.hpp"
#include "fiber/join.hpp"
#include "fiber/join_handle.hpp"
#include "fiber/select.hpp"
#include "fiber/sleep.hpp"
#include "fiber/tcp.hpp"
#include "fiber/yield.hpp"

#if FIBER_HAVE_ASIO
// Asio 1.22 looks for co_await in Clang through the Coroutines TS header
// <experimental/coroutine>, which libstdc++ does not have; Clang 14 in
// C++20 has the standard <coroutine>, which Asio then uses.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif
#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#endif

using namespace std::chrono_literals;

namespace {

const char* const kUsage =
    "[--threads N] [--repeat 5] [--spawn N] [--yield N] [--block-on N] [--join N]\n"
    "       [--select N] [--sleep N] [--echo N]\n"
    "  --threads N: fiber's workers and Asio's threads (default: fiber's default)\n"
    "  --repeat N: runs of each workload; the median is shown\n"
    "  the others: operations per run of each workload (0 leaves it out)";

using Clock = std::chrono::steady_clock;

constexpr auto kSleep = 10ms;
constexpr std::size_t kMessage = 64;

// Nanoseconds per operation of a batch that took `took`.
double per_op(Clock::duration took, long ops) {
    return std::chrono::duration<double, std::nano>(took).count() / static_cast<double>(ops);
}

// ---------------------------------------------------------------- fiber

fiber::Task<> empty() { co_return; }

fiber::Task<> yield_times(long n) {
    for (long i = 0; i < n; ++i) co_await fiber::yield_now();
}

fiber::Task<> join_times(long n) {
    for (long i = 0; i < n; ++i) co_await fiber::join(empty(), empty());
}

fiber::Task<> select_times(long n) {
    for (long i = 0; i < n; ++i) (void)co_await fiber::select(empty(), empty());
}

fiber::Task<> nap() { co_await fiber::sleep_for(kSleep); }

// The echo server: one connection, echoed until the client closes it.
fiber::Task<> echo_server(fiber::TcpListener listener) {
    auto [stream, peer] = co_await listener.accept();
    stream.set_nodelay();
    std::array<std::byte, 4096> buffer;
    while (std::size_t n = co_await stream.read(buffer)) {  // 0: the client closed
        co_await stream.write_all(std::span(buffer).first(n));
    }
}

// The client: connects (not timed), then `n` round trips of 64 B, one
// after the other; `took` is their time.
fiber::Task<> echo_client(long n, Clock::duration& took) {
    auto listener = fiber::TcpListener::bind("127.0.0.1:0");
    const fiber::SocketAddress address = listener.local_address();
    fiber::JoinHandle<void> server = fiber::spawn(echo_server(std::move(listener)));
    fiber::TcpStream stream = co_await fiber::TcpStream::connect(address);
    stream.set_nodelay();
    const std::array<std::byte, kMessage> message{};
    std::array<std::byte, 4096> reply;
    const auto start = Clock::now();
    for (long i = 0; i < n; ++i) {
        co_await stream.write_all(message);
        for (std::size_t got = 0; got < kMessage;) {
            const std::size_t r = co_await stream.read(reply);
            if (r == 0) throw std::runtime_error("echo: the server closed the connection");
            got += r;
        }
    }
    took = Clock::now() - start;
    stream.close();   // the server reads end of stream and returns
    co_await server;  // and rethrows here, had it failed
}

// Keeps what `task` threw, for the caller of run() to rethrow, and stops
// the executor: after a failed connect the server would wait for ever in
// accept(), and run() would never return.
fiber::Task<> guarded(fiber::Task<> task, std::exception_ptr& error, fiber::Executor& executor) {
    try {
        co_await std::move(task);
    } catch (...) {
        error = std::current_exception();
    }
    executor.stop();
}

// Runs the tasks that `spawn_all` spawns on a fresh executor until all are
// done; returns the wall time, the executor's start and end included.
template <typename F>
Clock::duration fiber_run(std::size_t threads, F spawn_all) {
    const auto start = Clock::now();
    auto [executor, spawner] = fiber::new_executor_and_spawner(threads);
    spawn_all(spawner);
    executor.run();
    return Clock::now() - start;
}

struct Fiber {
    std::size_t threads;

    double spawn(long n) const {
        return per_op(fiber_run(threads,
                                [n](fiber::Spawner& s) {
                                    for (long i = 0; i < n; ++i) s.spawn(empty());
                                }),
                      n);
    }
    double yield(long n) const {
        return per_op(fiber_run(threads, [n](fiber::Spawner& s) { s.spawn(yield_times(n)); }), n);
    }
    double block_on(long n) const {
        const auto start = Clock::now();
        for (long i = 0; i < n; ++i) fiber::block_on(empty());
        return per_op(Clock::now() - start, n);
    }
    double join(long n) const {
        return per_op(fiber_run(threads, [n](fiber::Spawner& s) { s.spawn(join_times(n)); }), n);
    }
    double select(long n) const {
        return per_op(fiber_run(threads, [n](fiber::Spawner& s) { s.spawn(select_times(n)); }), n);
    }
    double sleep(long n) const {
        return per_op(fiber_run(threads,
                                [n](fiber::Spawner& s) {
                                    for (long i = 0; i < n; ++i) s.spawn(nap());
                                }),
                      n);
    }
    double echo(long n) const {
        Clock::duration took{};
        std::exception_ptr error;
        auto [executor, spawner] = fiber::new_executor_and_spawner(threads);
        spawner.spawn(guarded(echo_client(n, took), error, executor));
        executor.run();
        if (error) std::rethrow_exception(error);
        return per_op(took, n);
    }
};

// ---------------------------------------------------------------- Asio

#if FIBER_HAVE_ASIO

using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

awaitable<void> asio_empty() { co_return; }

awaitable<void> asio_yield_times(long n) {
    auto executor = co_await asio::this_coro::executor;
    for (long i = 0; i < n; ++i) co_await asio::post(executor, use_awaitable);
}

awaitable<void> asio_join_times(long n) {
    for (long i = 0; i < n; ++i) co_await (asio_empty() && asio_empty());
}

awaitable<void> asio_select_times(long n) {
    for (long i = 0; i < n; ++i) (void)co_await (asio_empty() || asio_empty());
}

awaitable<void> asio_nap() {
    asio::steady_timer timer(co_await asio::this_coro::executor, kSleep);
    co_await timer.async_wait(use_awaitable);
}

awaitable<void> asio_echo_server(asio::ip::tcp::acceptor acceptor) {
    asio::ip::tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
    socket.set_option(asio::ip::tcp::no_delay(true));
    std::array<std::byte, 4096> buffer;
    for (;;) {
        std::size_t n = 0;
        try {
            n = co_await socket.async_read_some(asio::buffer(buffer), use_awaitable);
        } catch (const std::system_error& e) {
            if (e.code() == asio::error::eof) co_return;  // the client closed
            throw;
        }
        co_await asio::async_write(socket, asio::buffer(buffer.data(), n), use_awaitable);
    }
}

awaitable<void> asio_echo_client(long n, Clock::duration& took) {
    auto executor = co_await asio::this_coro::executor;
    asio::ip::tcp::acceptor acceptor(executor, {asio::ip::address_v4::loopback(), 0});
    const asio::ip::tcp::endpoint address = acceptor.local_endpoint();
    asio::co_spawn(executor, asio_echo_server(std::move(acceptor)), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);  // out of io_context::run(): see AsioThreads
    });
    asio::ip::tcp::socket socket(executor);
    co_await socket.async_connect(address, use_awaitable);
    socket.set_option(asio::ip::tcp::no_delay(true));
    const std::array<std::byte, kMessage> message{};
    std::array<std::byte, 4096> reply;
    const auto start = Clock::now();
    for (long i = 0; i < n; ++i) {
        co_await asio::async_write(socket, asio::buffer(message), use_awaitable);
        for (std::size_t got = 0; got < kMessage;) {
            got += co_await socket.async_read_some(asio::buffer(reply), use_awaitable);
        }
    }
    took = Clock::now() - start;
    socket.close();  // the server reads end of stream and returns
}

// A co_spawn completion: an exception that escaped the coroutine is thrown
// out of io_context::run(), where AsioThreads catches it.
void rethrow(std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
}

// Runs `context` on `threads` threads, the calling one included, until it
// runs out of work. The first exception that leaves run() on any thread
// stops the others and is rethrown here, once every thread has returned.
void run_threads(asio::io_context& context, std::size_t threads) {
    std::mutex mutex;
    std::exception_ptr error;
    auto run = [&] {
        try {
            context.run();
        } catch (...) {
            std::lock_guard lock(mutex);
            if (!error) error = std::current_exception();
            context.stop();
        }
    };
    std::vector<std::thread> others;
    for (std::size_t i = 1; i < threads; ++i) others.emplace_back(run);
    run();
    for (std::thread& t : others) t.join();
    if (error) std::rethrow_exception(error);
}

// The Asio twin of fiber_run: a fresh io_context, the coroutines that
// `spawn_all` starts, run until all are done.
template <typename F>
Clock::duration asio_run(std::size_t threads, F spawn_all) {
    const auto start = Clock::now();
    asio::io_context context(static_cast<int>(threads));
    spawn_all(context);
    run_threads(context, threads);
    return Clock::now() - start;
}

struct Asio {
    std::size_t threads;

    double spawn(long n) const {
        return per_op(asio_run(threads,
                               [n](asio::io_context& c) {
                                   for (long i = 0; i < n; ++i) {
                                       asio::co_spawn(c, asio_empty(), rethrow);
                                   }
                               }),
                      n);
    }
    double yield(long n) const {
        return per_op(
            asio_run(threads,
                     [n](asio::io_context& c) { asio::co_spawn(c, asio_yield_times(n), rethrow); }),
            n);
    }
    double block_on(long n) const {
        // Asio's block_on: one io_context on this thread, run until the
        // coroutine is done, then made ready to run again.
        asio::io_context context(1);
        const auto start = Clock::now();
        for (long i = 0; i < n; ++i) {
            asio::co_spawn(context, asio_empty(), rethrow);
            context.run();
            context.restart();
        }
        return per_op(Clock::now() - start, n);
    }
    double join(long n) const {
        return per_op(
            asio_run(threads,
                     [n](asio::io_context& c) { asio::co_spawn(c, asio_join_times(n), rethrow); }),
            n);
    }
    double select(long n) const {
        return per_op(asio_run(threads,
                               [n](asio::io_context& c) {
                                   asio::co_spawn(c, asio_select_times(n), rethrow);
                               }),
                      n);
    }
    double sleep(long n) const {
        return per_op(asio_run(threads,
                               [n](asio::io_context& c) {
                                   for (long i = 0; i < n; ++i) {
                                       asio::co_spawn(c, asio_nap(), rethrow);
                                   }
                               }),
                      n);
    }
    double echo(long n) const {
        Clock::duration took{};
        asio_run(threads, [n, &took](asio::io_context& c) {
            asio::co_spawn(c, asio_echo_client(n, took), rethrow);
        });
        return per_op(took, n);
    }
};

#endif  // FIBER_HAVE_ASIO

// ---------------------------------------------------------------- the table

struct Row {
    const char* name;
    const char* what;
    long n;
    std::function<double(long)> fiber;
    std::function<double(long)> asio;  // empty: no Asio
};

// The median of `repeat` runs of `run(n)`.
double median(const std::function<double(long)>& run, long n, long repeat) {
    std::vector<double> figures;
    for (long i = 0; i < repeat; ++i) figures.push_back(run(n));
    std::sort(figures.begin(), figures.end());
    const std::size_t mid = figures.size() / 2;
    return figures.size() % 2 ? figures[mid] : (figures[mid - 1] + figures[mid]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(argc, argv,
                             {"--threads", "--repeat", "--spawn", "--yield", "--block-on", "--join",
                              "--select", "--sleep", "--echo"},
                             kUsage);
    try {
        std::size_t threads = static_cast<std::size_t>(args.number("--threads", 0));
        if (threads == 0) threads = fiber::new_executor_and_spawner().first.workers();
        const long repeat = args.number("--repeat", 5);
        if (repeat == 0) args.fail("--repeat needs a number > 0");

        const Fiber f{threads};
        std::vector<Row> rows = {
            {"spawn",
             "spawn n empty tasks, wait for all",
             args.number("--spawn", 100'000),
             [&](long n) { return f.spawn(n); },
             {}},
            {"yield",
             "one task yields n times",
             args.number("--yield", 100'000),
             [&](long n) { return f.yield(n); },
             {}},
            {"block_on",
             "block_on an empty task, n times",
             args.number("--block-on", 100'000),
             [&](long n) { return f.block_on(n); },
             {}},
            {"join",
             "join two empty tasks, n times",
             args.number("--join", 100'000),
             [&](long n) { return f.join(n); },
             {}},
            {"select",
             "select of two ready tasks, n times",
             args.number("--select", 100'000),
             [&](long n) { return f.select(n); },
             {}},
            {"sleep",
             "n tasks sleep 10 ms at once",
             args.number("--sleep", 100'000),
             [&](long n) { return f.sleep(n); },
             {}},
            {"echo",
             "n TCP round trips of 64 B, one client",
             args.number("--echo", 10'000),
             [&](long n) { return f.echo(n); },
             {}},
        };
#if FIBER_HAVE_ASIO
        const Asio a{threads};
        rows[0].asio = [&](long n) { return a.spawn(n); };
        rows[1].asio = [&](long n) { return a.yield(n); };
        rows[2].asio = [&](long n) { return a.block_on(n); };
        rows[3].asio = [&](long n) { return a.join(n); };
        rows[4].asio = [&](long n) { return a.select(n); };
        rows[5].asio = [&](long n) { return a.sleep(n); };
        rows[6].asio = [&](long n) { return a.echo(n); };
        std::printf("fiber against Asio %d.%d.%d, C++20 coroutines\n", ASIO_VERSION / 100000,
                    ASIO_VERSION / 100 % 1000, ASIO_VERSION % 100);
        std::printf(
            "threads: %zu on each side (fiber: %zu worker%s; Asio: one io_context run by "
            "%zu thread%s); block_on: the calling thread alone\n",
            threads, threads, threads == 1 ? "" : "s", threads, threads == 1 ? "" : "s");
#else
        std::printf("fiber against Asio, C++20 coroutines\n");
        std::printf(
            "Asio was not found at build time (Debian: libasio-dev): fiber's figures "
            "alone\n");
        std::printf("threads: %zu (fiber's worker%s); block_on: the calling thread alone\n",
                    threads, threads == 1 ? "" : "s");
#endif
        std::printf("figures: wall time per operation, the median of %ld run%s\n\n", repeat,
                    repeat == 1 ? "" : "s");
        std::printf("%-10s %8s %12s %12s %11s\n", "workload", "n", "fiber ns/op", "asio ns/op",
                    "asio/fiber");
        for (const Row& row : rows) {
            if (row.n == 0) continue;
            const double fiber_ns = median(row.fiber, row.n, repeat);
            std::printf("%-10s %8ld %12.1f", row.name, row.n, fiber_ns);
            if (row.asio) {
                const double asio_ns = median(row.asio, row.n, repeat);
                std::printf(" %12.1f %11.2f\n", asio_ns, asio_ns / fiber_ns);
            } else {
                std::printf(" %12s %11s\n", "n/a", "n/a");
            }
            std::fflush(stdout);  // each row as soon as it is measured
        }
        std::printf("\n");
        for (const Row& row : rows) std::printf("%-10s %s\n", row.name, row.what);
        std::printf("sleep's figure includes the 10 ms: the batch's wall time over n\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
