// echo_client: load for echo_server. C clients, each a task on the pool,
// connect, send M messages of B bytes one after the other, and check every
// byte that comes back; then the round trips, the errors and the round
// trips per second. Exits 1 if any client failed. --self-serve starts an
// echo server in this process on a free port, so it can run alone (the tour).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/args.hpp"
#include "fiber/executor.hpp"
#include "fiber/tcp.hpp"

namespace {

const char* const kUsage =
    "[--address 127.0.0.1:7878] [--messages 1000] [--size 64] [--clients 10] [--self-serve]\n"
    "  [--threads N]\n"
    "  --size: 1 to 65536 bytes (a client writes a whole message before it reads the echo)\n"
    "  --self-serve: run an echo server in this process (--address is then ignored)\n"
    "  --threads N: worker threads (default: one per hardware thread)";

using Clock = std::chrono::steady_clock;

// What the client tasks share. They run on several workers: the counts
// they change are atomic; the rest is written before they start.
struct Load {
    fiber::Executor& executor;
    fiber::SocketAddress address;
    long clients, messages, size;
    std::atomic<long> running = 0, round_trips = 0, errors = 0;
    Clock::time_point start{}, end{};
    std::string error{};  // why the clients could not start
};

// Message m of client c: bytes that differ from client to client and from
// message to message, so an echo delivered to the wrong client, or a stale
// one, is caught. A linear congruential generator, seeded per message.
void fill(std::span<std::byte> message, long c, long m) {
    auto x = static_cast<std::uint32_t>(c * 1000003 + m);
    for (std::byte& b : message) {
        x = x * 1664525u + 1013904223u;  // Numerical Recipes' constants
        b = static_cast<std::byte>(x >> 24);
    }
}

fiber::Task<> client(Load& load, long c) {
    std::vector<std::byte> sent(load.size), echoed(load.size);
    try {
        auto stream = co_await fiber::TcpStream::connect(load.address);
        stream.set_nodelay();  // each message is one small write: send it now
        for (long m = 0; m < load.messages; ++m) {
            fill(sent, c, m);
            co_await stream.write_all(sent);
            for (std::size_t got = 0; got < echoed.size();) {
                std::size_t n = co_await stream.read(std::span(echoed).subspan(got));
                if (n == 0) throw std::runtime_error("the server closed the connection");
                got += n;
            }
            auto [a, b] = std::mismatch(sent.begin(), sent.end(), echoed.begin());
            if (a != sent.end()) {
                throw std::runtime_error("message " + std::to_string(m) + ": byte " +
                                         std::to_string(a - sent.begin()) + " came back wrong");
            }
            ++load.round_trips;
        }
    } catch (const std::exception& e) {
        ++load.errors;
        std::cerr << "client " << c << ": " << e.what() << std::endl;
    }
    if (--load.running == 0) {  // the last client: stop, and with it any server task
        load.end = Clock::now();
        load.executor.stop();
    }
}

// --self-serve: the heart of echo_server, without its logging and limits.
fiber::Task<> echo(fiber::TcpStream stream) {
    stream.set_nodelay();
    std::byte buffer[4096];
    while (std::size_t n = co_await stream.read(buffer)) {
        co_await stream.write_all(std::span(buffer).first(n));
    }
}

fiber::Task<> serve(fiber::TcpListener listener, fiber::Spawner spawner) {
    for (;;) spawner.spawn(echo((co_await listener.accept()).stream));
}

fiber::Task<> start(Load& load, fiber::Spawner spawner, bool self_serve) {
    if (self_serve) {
        try {
            auto listener = fiber::TcpListener::bind("127.0.0.1:0");
            load.address = listener.local_address();
            spawner.spawn(serve(std::move(listener), spawner));
        } catch (const std::exception& e) {
            load.error = e.what();
            co_return;
        }
        std::cout << "echo server in this process on " << load.address.to_string() << std::endl;
    }
    load.running = load.clients;
    load.start = Clock::now();
    for (long c = 0; c < load.clients; ++c) spawner.spawn(client(load, c));
    co_return;
}

}  // namespace

int main(int argc, char** argv) {
    fiber::common::Args args(
        argc, argv, {"--address", "--messages", "--size", "--clients", "--self-serve", "--threads"},
        kUsage);
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
    const long clients = args.number("--clients", 10), size = args.number("--size", 64);
    if (clients < 1) args.fail("--clients needs a number >= 1");
    if (size < 1 || size > 65536) args.fail("--size needs a number from 1 to 65536");
    try {
        auto [executor, spawner] =
            fiber::new_executor_and_spawner(static_cast<std::size_t>(args.number("--threads", 0)));
        Load load{executor, *address, clients, args.number("--messages", 1000), size};
        spawner.spawn(start(load, spawner, args.has("--self-serve")));
        executor.run();  // until the last client stops it
        if (!load.error.empty()) throw std::runtime_error(load.error);
        std::chrono::duration<double> seconds = load.end - load.start;
        std::cout << load.clients << " clients, " << load.messages << " messages of " << load.size
                  << " bytes each\n"
                  << "round trips: " << load.round_trips.load() << "\n"
                  << "errors: " << load.errors.load() << "\n"
                  << "round trips per second: "
                  << static_cast<long>(load.round_trips / std::max(seconds.count(), 1e-9))
                  << std::endl;
        return load.errors == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
