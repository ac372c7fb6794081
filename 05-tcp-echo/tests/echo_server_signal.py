#!/usr/bin/env python3
"""End to end: echo_server's graceful stop on SIGINT and SIGTERM.

Usage: echo_server_signal.py PROGRAM_DIR EXE_SUFFIX [EMULATOR ...]

Two runs of `echo_server --address 127.0.0.1:0`:
1. A client is mid-conversation when SIGINT comes. The server must stop
   accepting (a new connection is refused), still echo what the client sends
   next, log the connection when the client closes, and exit 0 without
   waiting out its second of grace.
2. A client connects and stays silent when SIGTERM comes. The server must
   give it its second, say it closes the one left, close it (the client sees
   end of stream or a reset), and exit 0.
Every wait has a limit: a server that hangs fails the test, it is killed.
Windows has no signals (echo_server handles Ctrl+C there, which a test
cannot send to a program under wine): the script says so and CTest counts
it as skipped.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

LIMIT = 10  # seconds for any one step; the server's grace period is 1 s


def fail(message):
    sys.exit(f"FAIL: {message}")


class Server:
    def __init__(self, program):
        self.process = subprocess.Popen([program, "--address", "127.0.0.1:0"],
                                         stdout=subprocess.PIPE, text=True)
        self.watchdog = threading.Timer(6 * LIMIT, self.process.kill)
        self.watchdog.start()
        self.lines = []
        first = self.line()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:([1-9][0-9]*)", first)
        if not match:
            self.close()
            fail(f"echo_server's first line is {first!r}, not 'listening on ADDRESS'")
        self.port = int(match[1])

    def line(self):
        # readline() blocks; the watchdog bounds it.
        text = self.process.stdout.readline().rstrip("\n")
        print(f"server: {text}", flush=True)
        self.lines.append(text)
        return text

    def wait_exit(self):
        try:
            rest, _ = self.process.communicate(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            self.close()
            fail(f"echo_server did not exit within {LIMIT} s of being stopped")
        for text in rest.splitlines():
            print(f"server: {text}", flush=True)
            self.lines.append(text)
        return self.process.returncode

    def close(self):
        self.watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def connect(port):
    client = socket.create_connection(("127.0.0.1", port), timeout=LIMIT)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def round_trip(client, message):
    client.sendall(message)
    echoed = b""
    while len(echoed) < len(message):
        chunk = client.recv(len(message) - len(echoed))
        if not chunk:
            fail(f"the server closed the connection before echoing {message!r}")
        echoed += chunk
    if echoed != message:
        fail(f"sent {message!r}, got {echoed!r} back")


def refused(port):
    """True once a connect is refused; a connection made before the listener
    closed (the stop is under way on another worker) is closed again, and one
    whose handshake meets the listener's close is reset: both mean "not
    refused yet", and the loop tries again."""
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=LIMIT).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            pass
        time.sleep(0.01)
    return False


def stop_while_a_client_talks(program):
    server = Server(program)
    try:
        client = connect(server.port)
        round_trip(client, b"before the signal")
        server.process.send_signal(signal.SIGINT)
        if server.line() != "stopping, connections open: 1":
            fail("echo_server did not report one open connection when it was stopping")
        if not refused(server.port):
            fail("echo_server still accepts connections after SIGINT")
        round_trip(client, b"after the signal")  # a live connection is still served
        client.close()
        code = server.wait_exit()
    finally:
        server.close()
    if code != 0:
        fail(f"echo_server exited with {code} after SIGINT")
    expected = re.compile(r"127\.0\.0\.1:[0-9]+ closed: 33 bytes echoed, end of stream")
    if not any(expected.fullmatch(text) for text in server.lines):
        fail("echo_server did not log the connection with its 33 bytes")
    if any(text.startswith("closing the") for text in server.lines):
        fail("echo_server closed a connection that finished within its grace period")


def stop_with_a_silent_client(program):
    server = Server(program)
    try:
        client = connect(server.port)
        round_trip(client, b"x")  # accepted and served: the server counts it as live
        server.process.send_signal(signal.SIGTERM)
        code = server.wait_exit()
        try:
            end = client.recv(1)
        except ConnectionResetError:
            end = b""
        client.close()
    finally:
        server.close()
    if code != 0:
        fail(f"echo_server exited with {code} after SIGTERM")
    if end != b"":
        fail(f"the silent client got {end!r}, not the end of the connection")
    for line in ("stopping, connections open: 1", "closing the 1 left"):
        if line not in server.lines:
            fail(f"echo_server did not print '{line}'")


def main():
    program_dir, suffix, emulator = sys.argv[1], sys.argv[2], sys.argv[3:]
    if emulator or os.name == "nt":
        print("skipped: no POSIX signals for a Windows program (echo_server handles Ctrl+C there)")
        return
    program = os.path.join(program_dir, "echo_server" + suffix)
    stop_while_a_client_talks(program)
    stop_with_a_silent_client(program)
    print("ok: both stops were graceful")


if __name__ == "__main__":
    main()
