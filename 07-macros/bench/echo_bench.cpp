// The echo on the runtime, clients and server as tasks on one executor,
// over loopback in this one process.
// BM_EchoRoundTrip: one client sends 64 B and waits for the echo, again and
// again; an iteration is one round trip, so its time is the latency.
// BM_EchoParallel/C: C clients at once, kRoundTrips round trips each per
// iteration. echo_floor_bench.cpp runs the same workload with no runtime.
#include <benchmark/benchmark.h>

#include <array>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/echo.hpp"
#include "common/cpu_time.hpp"
#include "fiber/executor.hpp"
#include "fiber/tcp.hpp"
#include "fiber/waker.hpp"

namespace {

using fiber::bench::kMessage;
using fiber::bench::kRoundTrips;
using fiber::bench::report;

// The server: a task per connection, as an echo server would run it.
fiber::Task<> echo(fiber::TcpStream stream) {
    std::byte buffer[4096];
    while (std::size_t n = co_await stream.read(buffer)) {  // 0: the client closed
        co_await stream.write_all(std::span(buffer).first(n));
    }
}

fiber::Task<> accept_clients(fiber::TcpListener listener, fiber::Spawner spawner, long clients) {
    for (long i = 0; i < clients; ++i) {
        auto [stream, peer] = co_await listener.accept();
        stream.set_nodelay();  // every reply leaves at once, as in the plain loop
        spawner.spawn(echo(std::move(stream)));
    }
}

// Starts the server and connects `clients` clients to it (not timed).
fiber::Task<std::vector<fiber::TcpStream>> connect_clients(fiber::Spawner spawner, long clients) {
    auto listener = fiber::TcpListener::bind("127.0.0.1:0");
    const fiber::SocketAddress address = listener.local_address();
    spawner.spawn(accept_clients(std::move(listener), spawner, clients));
    std::vector<fiber::TcpStream> streams;
    for (long i = 0; i < clients; ++i) {
        streams.push_back(co_await fiber::TcpStream::connect(address));
        streams.back().set_nodelay();
    }
    co_return streams;
}

// Send 64 B, then read until all 64 are back.
fiber::Task<> round_trip(fiber::TcpStream& stream) {
    std::array<std::byte, kMessage> message{};
    co_await stream.write_all(message);
    std::array<std::byte, 4096> reply;  // more than one echo: a read that fills less drained it
    for (std::size_t got = 0; got < kMessage;) {
        std::size_t n = co_await stream.read(reply);
        if (n == 0) throw std::runtime_error("the echo server closed the connection");
        got += n;
    }
}

// One iteration of BM_EchoParallel, which its driver awaits until every
// client is done. The clients run on several workers: the count, the first
// error and the driver's waker are under a mutex, and the driver checks the
// count and publishes its waker under it in one step, or a client ending
// in between would find no waker and the round would never end.
struct Round {
    std::mutex mutex;
    long left = 0;
    std::string error;  // the first client's failure, if any
    fiber::Waker driver;

    void done(std::string failure) {
        fiber::Waker last;
        {
            std::lock_guard lock(mutex);
            if (error.empty()) error = std::move(failure);
            if (--left == 0) last = std::move(driver);
        }
        if (last) std::move(last).wake();
    }
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> self) {
        fiber::Waker waker = fiber::current_waker(self);
        std::lock_guard lock(mutex);
        if (left == 0) return false;
        driver = std::move(waker);
        return true;
    }
    void await_resume() const noexcept {}
};

// Catches, rather than lets the executor report, so that the round ends
// and the driver can skip the benchmark with the message.
fiber::Task<> client(fiber::TcpStream& stream, Round& round) {
    std::string failure;
    try {
        for (long i = 0; i < kRoundTrips; ++i) co_await round_trip(stream);
    } catch (const std::exception& e) {
        failure = e.what();
    }
    round.done(std::move(failure));
}

// The drivers run the benchmark loop inside a task, so an iteration costs
// what the round trips cost and not an Executor::run() each.
fiber::Task<> sequential(benchmark::State& state, fiber::Spawner spawner, double& cpu) {
    auto streams = co_await connect_clients(spawner, 1);
    const double before = fiber::common::process_cpu_seconds();
    for (auto _ : state) co_await round_trip(streams[0]);
    cpu = fiber::common::process_cpu_seconds() - before;
}

fiber::Task<> parallel(benchmark::State& state, fiber::Spawner spawner, double& cpu) {
    const long clients = static_cast<long>(state.range(0));
    auto streams = co_await connect_clients(spawner, clients);
    Round round;
    const double before = fiber::common::process_cpu_seconds();
    for (auto _ : state) {
        round.left = clients;
        for (auto& stream : streams) spawner.spawn(client(stream, round));
        co_await round;
        if (!round.error.empty()) {
            state.SkipWithError(round.error.c_str());
            break;
        }
    }
    cpu = fiber::common::process_cpu_seconds() - before;
}

using Driver = fiber::Task<> (*)(benchmark::State&, fiber::Spawner, double&);

// Stops the executor when the driver is done: the echo tasks still waiting
// for their clients' next message (or the accept loop, after a failed
// connect) are destroyed with it, and their sockets closed.
fiber::Task<> guarded(Driver driver, benchmark::State& state, fiber::Spawner spawner,
                      fiber::Executor& executor, double& cpu) {
    try {
        co_await driver(state, spawner, cpu);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
    executor.stop();
}

void run_fiber(benchmark::State& state, Driver driver, long round_trips_per_iteration) {
    double cpu = 0;
    auto [executor, spawner] = fiber::new_executor_and_spawner();
    spawner.spawn(guarded(driver, state, spawner, executor, cpu));
    executor.run();
    report(state, round_trips_per_iteration, cpu);
}

void BM_EchoRoundTrip(benchmark::State& state) { run_fiber(state, sequential, 1); }

void BM_EchoParallel(benchmark::State& state) {
    run_fiber(state, parallel, static_cast<long>(state.range(0)) * kRoundTrips);
}

// Real time, for the reason given at fiber::bench::clients.
BENCHMARK(BM_EchoRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EchoParallel)->Apply(fiber::bench::clients);

}  // namespace
