#!/usr/bin/env python3
"""Exercise the container's HEALTHCHECK probe against local stand-in servers.

    test_healthcheck.py PATH-TO-COMPILED-doclink-healthcheck

Every server listens on 127.0.0.1 only and stops when the test ends.
"""
import http.server
import socket
import socketserver
import subprocess
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Garbage(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(1024)
        self.request.sendall(b"SSH-2.0-not-http\r\n")


def serve(handler):
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(probe):
    http_server = serve(Handler)
    garbage = serve(Garbage)
    port, gport, closed = http_server.server_address[1], garbage.server_address[1], free_port()
    cases = [
        (f"http://127.0.0.1:{port}/healthz", 0),
        (f"http://127.0.0.1:{port}/readyz", 1),
        (f"http://127.0.0.1:{port}/missing", 1),
        (f"http://127.0.0.1:{closed}/healthz", 1),
        (f"http://127.0.0.1:{gport}/healthz", 1),
        (f"https://127.0.0.1:{port}/healthz", 1),
        ("http://localhost:9464/healthz", 1),
    ]
    failed = 0
    for url, want in cases:
        got = subprocess.run([probe, url], capture_output=True, timeout=20).returncode
        if got != want:
            failed += 1
            print(f"FAIL {url}: exit {got}, want {want}")
    http_server.shutdown()
    garbage.shutdown()
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
