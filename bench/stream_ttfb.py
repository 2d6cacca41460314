#!/usr/bin/env python3
"""Time to first byte and first delta of streamed tutor replies, against the model's first chunk.

Runs a streaming chat-completions stub (standard library only) in this process, starts the local
runner (RUNNER, with DATABASE_URL from the environment) pointed at it, and posts N questions with
`Accept: text/event-stream`. One clock (time.monotonic, the Runtime API's too) serves the stub
and the client, so
"added" is exactly: when the client read the first `delta` event minus when the stub wrote its
first chunk. The same client reading the stub directly gives the floor that loopback and this
script cost on their own.

    stream_ttfb.py RUNNER [N]
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNKS = 5
GAP = 0.02  # seconds between the model's chunks (the first one included)
first_chunk_at = []  # when the stub wrote each call's first text chunk


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def write_chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def event(self, payload):
        self.write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def do_POST(self):
        # Each chunk goes out when written, as a model endpoint's would (no Nagle delay).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for n in range(CHUNKS):
            time.sleep(GAP)
            if n == 0:
                first_chunk_at.append(time.monotonic())
            self.event({"choices": [{"index": 0, "delta": {"content": f"Chunk {n}. "}}]})
        self.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.event({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": CHUNKS}})
        self.write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, path, body, token=None, accept="application/json"):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"content-type": "application/json", "accept": accept}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    return conn, response


def streamed(port, path, body, token, marker):
    """(first byte, marker seen, end), each a time.monotonic() reading."""
    conn, response = call(port, path, body, token, "text/event-stream")
    assert response.status in (200, 201), (response.status, response.read())
    first_byte = seen = None
    received = b""
    while True:
        data = response.read1(65536)
        if not data:
            break
        now = time.monotonic()
        first_byte = first_byte or now
        received += data
        if seen is None and marker in received:
            seen = now
    end = time.monotonic()
    conn.close()
    assert seen is not None, received[:500]
    return first_byte, seen, end, received


def summary(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"median {statistics.median(values):.2f} ms, p90 {p90:.2f} ms, min {values[0]:.2f} ms"


def measure(runner, env, n=50, email="stream-bench@example.com"):
    """Starts RUNNER with `env` (DATABASE_URL, JWT_SECRET, PRIMER_BLOB_DIR...) pointed at the stub,
    posts `n` streamed questions after 5 of warm-up; the medians and p90s, in ms."""
    stub_port, port = free_port(), free_port()
    server = ThreadingHTTPServer(("127.0.0.1", stub_port), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    env = dict(env, PORT=str(port), MODEL_API_KEY="sk-bench", MODEL_NAME="bench-model",
               MODEL_BASE_URL=f"http://127.0.0.1:{stub_port}/v1", RUST_LOG="warn")
    process = subprocess.Popen([runner], env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        _, response = call(port, "/api/auth/register",
                           {"email": email, "password": "correct horse battery", "name": "Bench"})
        token = json.loads(response.read())["session"]["access_token"]
        _, response = call(port, "/api/conversations", {}, token)
        conversation = json.loads(response.read())["conversation"]["id"]

        # The floor: this client reading the stub itself.
        floor = []
        for _ in range(n):
            first_chunk_at.clear()
            _, seen, _, _ = streamed(stub_port, "/v1/chat/completions", {"stream": True}, None, b"Chunk 0")
            floor.append((seen - first_chunk_at[0]) * 1000)

        ttfb, added, total = [], [], []
        for i in range(n + 5):
            first_chunk_at.clear()
            started = time.monotonic()
            path = f"/api/conversations/{conversation}/messages"
            first_byte, seen, end, body = streamed(port, path, {"content": f"Question {i}: what is a topic?"}, token,
                                                   b"event: delta")
            assert b"event: done" in body, body[-500:]
            if i < 5:
                continue  # warm-up: connections of the pools, statement caches
            ttfb.append((first_byte - started) * 1000)
            added.append((seen - first_chunk_at[0]) * 1000)
            total.append((end - started) * 1000)
        return {"n": n, "ttfb": ttfb, "added": added, "floor": floor, "total": total}
    finally:
        process.terminate()
        process.wait()
        server.shutdown()


def measure_bootstrap(bootstrap, env, event, n=50):
    """The same through the streaming bootstrap (`bootstrap`, behind a local Runtime API, on
    `event`, a dict: a streamed post whose token and conversation exist): when the Runtime API received
    the chunk holding the first `delta`, after the stub's first chunk; in ms."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "lib"))
    from runtime_api import LocalFunction

    stub_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", stub_port), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(env, MODEL_API_KEY="sk-bench", MODEL_NAME="bench-model",
               MODEL_BASE_URL=f"http://127.0.0.1:{stub_port}/v1")
    added = []
    try:
        with LocalFunction("conversations-stream", bootstrap, env, log_path=env.get("BENCH_LOG")) as function:
            for i in range(n + 5):
                first_chunk_at.clear()
                # A question of its own each time: the same one again may be answered without the model.
                event = dict(event, body=json.dumps({"content": f"Question {i}: what is a topic?"}))
                invocation = function.invoke(event)
                body = invocation.json().get("body", "") if invocation.outcome == "response" else ""
                assert "event: done" in body, (invocation.outcome, invocation.body[:500])
                received, seen = b"", None
                for at, chunk in invocation.chunks:
                    received += chunk
                    if b"event: delta" in received:
                        seen = at
                        break
                assert seen is not None and first_chunk_at, received[:500]
                if i >= 5:
                    added.append((seen - first_chunk_at[0]) * 1000)
    finally:
        server.shutdown()
    return {"n": n, "added": added}


def main():
    runner, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50
    r = measure(runner, dict(os.environ), n)
    print(f"{n} streamed replies through the local runner ({CHUNKS} chunks, {GAP * 1000:.0f} ms apart):")
    print(f"  first byte (user_message event) after the request: {summary(r['ttfb'])}")
    print(f"  first delta after the model's first chunk:          {summary(r['added'])}")
    print(f"  the same client reading the stub directly:           {summary(r['floor'])}")
    print(f"  added by primer (median, less the direct read):      "
          f"{statistics.median(r['added']) - statistics.median(r['floor']):.2f} ms")
    print(f"  whole reply: {summary(r['total'])}")


if __name__ == "__main__":
    main()
