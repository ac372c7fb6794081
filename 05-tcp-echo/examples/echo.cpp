// A TCP echo server and three clients in one process, on one thread. The
// server accepts on 127.0.0.1 (port 0: the OS picks a free one) and echoes
// each connection in a task of its own; each client sends a line, shuts
// down its writing side, and reads the echo to the end. The tasks
// interleave; the report is printed afterwards, in a fixed order.
#include <cstdio>
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fiber/executor.hpp"
#include "fiber/tcp.hpp"

namespace {

struct Client {
    Client(std::string n, std::string m) : name(std::move(n)), message(std::move(m)) {}
    std::string name, message, reply, error;
};

fiber::Task<> echo(fiber::TcpStream stream, std::size_t& echoed) {
    std::byte buffer[1024];
    while (std::size_t n = co_await stream.read(buffer)) {  // 0: the client is done
        co_await stream.write_all(std::span(buffer).first(n));
        echoed += n;
    }
}

fiber::Task<> server(fiber::TcpListener listener, fiber::Spawner spawner, int connections,
                     std::size_t& echoed) {
    for (int i = 0; i < connections; ++i) {
        auto [stream, peer] = co_await listener.accept();
        spawner.spawn(echo(std::move(stream), echoed));
    }
}

fiber::Task<> client(fiber::SocketAddress address, Client& me) {
    try {
        auto stream = co_await fiber::TcpStream::connect(address);
        co_await stream.write_all(std::as_bytes(std::span(me.message)));
        stream.shutdown_write();  // "that is all": the server reads end of stream
        char buffer[1024];
        while (std::size_t n = co_await stream.read(std::as_writable_bytes(std::span(buffer)))) {
            me.reply.append(buffer, n);
        }
    } catch (const std::exception& e) {
        me.error = e.what();
    }
}

fiber::Task<> start(fiber::Spawner spawner, std::vector<Client>& clients, std::size_t& echoed) {
    auto listener = fiber::TcpListener::bind("127.0.0.1:0");
    const fiber::SocketAddress address = listener.local_address();
    std::cout << "server listening on " << address.to_string() << std::endl;
    spawner.spawn(server(std::move(listener), spawner, int(clients.size()), echoed));
    for (Client& c : clients) spawner.spawn(client(address, c));
    co_return;
}

}  // namespace

int main() {
    std::vector<Client> clients{{"alice", "hello, fiber"},
                                {"bob", "one reactor, many sockets"},
                                {"carol", "half-close, then read the rest"}};
    std::size_t echoed = 0;
    try {
        auto [executor, spawner] = fiber::new_executor_and_spawner();
        spawner.spawn(start(spawner, clients, echoed));
        executor.run();  // returns when every task has finished
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    int failures = 0;
    for (const Client& c : clients) {
        std::cout << c.name << " sent \"" << c.message << "\"";
        if (c.error.empty()) {
            std::cout << ", got back \"" << c.reply << "\"" << std::endl;
        } else {
            std::cout << ", failed: " << c.error << std::endl;
        }
        failures += !c.error.empty() || c.reply != c.message;
    }
    std::cout << "server echoed " << echoed << " bytes on " << clients.size() << " connections"
              << std::endl;
    return failures == 0 ? 0 : 1;
}
