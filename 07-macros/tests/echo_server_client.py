#!/usr/bin/env python3
"""End to end: echo_server and echo_client, each as a process of its own.

Usage: echo_server_client.py PROGRAM_DIR EXE_SUFFIX [EMULATOR ...]

Starts `echo_server --address 127.0.0.1:0 --connections 100`, reads the port
from its first line ("listening on 127.0.0.1:PORT"), runs `echo_client
--clients 100 --messages 1000 --size 64` against it, and checks that the
client saw every byte come back (round trips: 100000, errors: 0), that the
server logged 100 connections closed at end of stream, and that both exit 0.
EMULATOR runs the programs (wine-run in the Windows build). Wine manages
about a thousand round trips a second here, so under an emulator each
client sends 20 messages instead of 1000: the same two processes and 100
connections, in seconds rather than minutes. CTest runs this script
(FiberChapter.cmake registers tests/*.py) with a time limit.
"""
import os
import re
import subprocess
import sys
import threading

CLIENTS, SIZE = 100, 64
LIMIT = 50  # seconds for each program; CTest's limit for the whole test is higher


def main():
    program_dir, suffix, emulator = sys.argv[1], sys.argv[2], sys.argv[3:]
    messages = 20 if emulator else 1000

    def command(name, *args):
        return [*emulator, os.path.join(program_dir, name + suffix), *map(str, args)]

    # stderr goes straight to ours, so CTest shows it if the test fails.
    server = subprocess.Popen(
        command("echo_server", "--address", "127.0.0.1:0", "--connections", CLIENTS),
        stdout=subprocess.PIPE, text=True)
    # A server that hangs must not outlive the test.
    watchdog = threading.Timer(2 * LIMIT, server.kill)
    watchdog.start()
    try:
        first = server.stdout.readline().rstrip("\n")
        print(f"server: {first}", flush=True)
        match = re.fullmatch(r"listening on (127\.0\.0\.1:[1-9][0-9]*)", first)
        if not match:
            server.kill()
            sys.exit(f"FAIL: echo_server's first line is {first!r}, not 'listening on ADDRESS'")
        client = subprocess.run(
            command("echo_client", "--address", match[1], "--clients", CLIENTS,
                    "--messages", messages, "--size", SIZE),
            stdout=subprocess.PIPE, text=True, timeout=LIMIT)
        print(client.stdout, end="", flush=True)
        rest, _ = server.communicate(timeout=LIMIT)  # the connections closed, one per line
    finally:
        watchdog.cancel()
        if server.poll() is None:
            server.kill()

    failures = []
    if client.returncode != 0:
        failures.append(f"echo_client exited with {client.returncode}")
    for line in (f"round trips: {CLIENTS * messages}", "errors: 0"):
        if line not in client.stdout.splitlines():
            failures.append(f"echo_client did not print '{line}'")
    if server.returncode != 0:
        failures.append(f"echo_server exited with {server.returncode}")
    closed = f"closed: {messages * SIZE} bytes echoed, end of stream"
    served = sum(line.endswith(closed) for line in rest.splitlines())
    print(f"server: {served} connections closed with '{closed}'")
    if served != CLIENTS:
        failures.append(f"echo_server logged {served} such connections, not {CLIENTS}:\n{rest}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
