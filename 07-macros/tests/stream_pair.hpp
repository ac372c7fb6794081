// A connected pair of TCP streams on the loopback, for the tests of
// cancellation, join and select.
#pragma once

#include <utility>

#include "fiber/task.hpp"
#include "fiber/tcp.hpp"

struct StreamPair {
    fiber::TcpStream client;
    fiber::TcpStream server;
};

inline fiber::Task<StreamPair> connected_pair() {
    auto listener = fiber::TcpListener::bind("127.0.0.1:0");
    fiber::TcpStream client = co_await fiber::TcpStream::connect(listener.local_address());
    fiber::TcpStream server = (co_await listener.accept()).stream;
    co_return StreamPair{std::move(client), std::move(server)};
}
