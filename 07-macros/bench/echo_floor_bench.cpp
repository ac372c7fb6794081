// The floor beside the runtime: the echo of echo_bench.cpp with no runtime,
// Linux only. BM_EchoParallelPlainEpoll/C: the same clients and round trips,
// served by a plain non-blocking epoll loop. BM_EchoParallelThreadPerConnection/C:
// served by a blocking thread per connection, the naive contrast.
//
// Made comparable this way: the fiber benchmark runs the server and the
// clients as tasks on one executor thread (its reactor thread polls and
// hands readiness over). The plain loop runs the same server and the same
// clients on one thread too, with one epoll set for all their sockets and
// no hand-over: what is left is the system calls the echo cannot avoid.
// Same loopback connections, TCP_NODELAY on both ends, 64 B, kRoundTrips
// per client per iteration, connecting not timed. The thread-per-
// connection variant drives the clients with the same loop and serves
// each connection from a blocking thread of its own.
#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench/echo.hpp"
#include "common/cpu_time.hpp"

#ifdef __linux__
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "common/os.hpp"
#endif

namespace {

using fiber::bench::kMessage;
using fiber::bench::kRoundTrips;

#ifdef __linux__

using fiber::common::throw_last_error;

// C loopback connections and the epoll set; the destructor closes them all.
struct Connections {
    std::vector<int> owned, clients, servers;  // servers[i] is the far end of clients[i]
    int epoll = -1;
    ~Connections() {
        for (int fd : owned) ::close(fd);
    }
    int own(int fd, const char* what) {
        if (fd < 0) throw_last_error(what);
        owned.push_back(fd);
        return fd;
    }
    void open(long n) {
        epoll = own(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
        const int listener = own(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t size = sizeof address;
        auto* a = reinterpret_cast<sockaddr*>(&address);
        if (::bind(listener, a, size) != 0 || ::listen(listener, 1024) != 0 ||
            ::getsockname(listener, a, &size) != 0) {
            throw_last_error("listen on 127.0.0.1");
        }
        const int on = 1;
        for (long i = 0; i < n; ++i) {
            // A blocking connect returns once the handshake is done; the
            // backlog holds the connection until the accept right after.
            const int c = own(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
            if (::connect(c, a, size) != 0) throw_last_error("connect 127.0.0.1");
            const int s = own(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC), "accept");
            if (::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0 ||
                ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
                throw_last_error("setsockopt TCP_NODELAY");
            }
            clients.push_back(c);
            servers.push_back(s);
        }
    }
};

// With one 64 B message in flight per connection a socket buffer never
// fills, so a short send means something broke: fail loudly instead of
// carrying a write queue that would never run.
void send_all(int fd, const std::byte* data, std::size_t n) {
    const ssize_t sent = ::send(fd, data, n, MSG_NOSIGNAL);  // MSG_NOSIGNAL: never SIGPIPE
    if (sent < 0) throw_last_error("send");
    if (static_cast<std::size_t>(sent) != n) throw std::runtime_error("send: short write");
}

// Level-triggered, registered once: the textbook loop, no epoll_ctl per
// operation (the reactor, too, registers a socket once, edge-triggered).
void watch(int epoll, int fd, std::uint64_t tag) {
    fiber::common::set_nonblocking(fd);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = tag;
    if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) throw_last_error("epoll_ctl ADD");
}

constexpr std::uint64_t kServerSide = std::uint64_t{1} << 32;  // tags a server socket

struct Client {
    int fd;
    long left = 0;        // round trips still to do in this iteration
    std::size_t got = 0;  // bytes of the echo read so far
};

// One iteration: every client does kRoundTrips round trips at once, as the
// fiber client tasks do. Server sockets in the epoll set are echoed here.
void run_round(int epoll, std::vector<Client>& clients, const std::vector<int>& servers) {
    const std::array<std::byte, kMessage> message{};
    for (Client& c : clients) {
        c.left = kRoundTrips;
        send_all(c.fd, message.data(), kMessage);
    }
    std::size_t done = 0;
    std::array<epoll_event, 256> events;  // a batch per wait; the rest stay ready
    std::array<std::byte, 4096> buffer;
    while (done < clients.size()) {
        const int n = ::epoll_wait(epoll, events.data(), int(events.size()), -1);
        if (n < 0 && errno != EINTR) throw_last_error("epoll_wait");
        for (int i = 0; i < n; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            const bool server = (tag & kServerSide) != 0;
            Client* c = server ? nullptr : &clients[tag];
            const int fd = server ? servers[tag & ~kServerSide] : c->fd;
            // Into a buffer larger than one echo, as the fiber client reads.
            const ssize_t r = ::recv(fd, buffer.data(), buffer.size(), 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;  // reported again
            if (r < 0) throw_last_error("recv");
            if (r == 0) throw std::runtime_error("recv: a connection closed mid-benchmark");
            if (server) {
                send_all(fd, buffer.data(), static_cast<std::size_t>(r));
            } else if ((c->got += static_cast<std::size_t>(r)) == kMessage) {
                c->got = 0;
                if (--c->left == 0) {
                    ++done;
                } else {
                    send_all(fd, message.data(), kMessage);
                }
            }
        }
    }
}

// The naive server: a blocking thread per connection.
void serve_blocking(int fd) {
    std::array<std::byte, 4096> buffer;
    for (;;) {
        const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || ::send(fd, buffer.data(), std::size_t(n), MSG_NOSIGNAL) != n) break;
    }
    // A failure must not leave its client waiting forever: the client
    // reads end of stream, and the benchmark fails with a message.
    ::shutdown(fd, SHUT_RDWR);
}

// Shutting the server sockets down ends each thread's blocking recv(), so
// the join cannot hang: no thread outlives run_floor, even when it throws.
struct ServerThreads {
    const std::vector<int>& sockets;
    std::vector<std::thread> threads;
    ~ServerThreads() {
        for (int fd : sockets) ::shutdown(fd, SHUT_RDWR);
        for (std::thread& t : threads) t.join();
    }
};

void run_floor(benchmark::State& state, bool thread_per_connection) {
    try {
        const long n = static_cast<long>(state.range(0));
        Connections c;
        c.open(n);
        std::vector<Client> clients;
        for (std::size_t i = 0; i < c.clients.size(); ++i) {
            clients.push_back({c.clients[i]});
            watch(c.epoll, c.clients[i], i);
            if (!thread_per_connection) watch(c.epoll, c.servers[i], kServerSide | i);
        }
        ServerThreads servers{c.servers, {}};  // started untimed, like the echo tasks
        for (int fd : c.servers) {
            if (thread_per_connection) servers.threads.emplace_back(serve_blocking, fd);
        }
        const double before = fiber::common::process_cpu_seconds();
        for (auto _ : state) run_round(c.epoll, clients, c.servers);
        fiber::bench::report(state, n * kRoundTrips, fiber::common::process_cpu_seconds() - before);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
}

#else  // no epoll: the rows say why they are empty

void run_floor(benchmark::State& state, bool) {
    state.SkipWithError("Linux only: the plain loop and its clients are written on epoll");
}

#endif

void BM_EchoParallelPlainEpoll(benchmark::State& state) { run_floor(state, false); }
void BM_EchoParallelThreadPerConnection(benchmark::State& state) { run_floor(state, true); }

BENCHMARK(BM_EchoParallelPlainEpoll)->Apply(fiber::bench::clients);
BENCHMARK(BM_EchoParallelThreadPerConnection)->Apply(fiber::bench::clients);

}  // namespace
