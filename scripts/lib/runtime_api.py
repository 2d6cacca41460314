#!/usr/bin/env python3
"""A local AWS Lambda Runtime API (2018-06-01), to run a built `bootstrap` outside Lambda.

`LocalFunction` starts a Runtime API server on 127.0.0.1 and a free port, spawns the bootstrap
with AWS_LAMBDA_RUNTIME_API pointing at it, and hands it events one at a time, as Lambda does:

    with LocalFunction("AuthFunction", ".aws-sam/build/AuthFunction/bootstrap", env) as fn:
        result = fn.invoke(event_bytes)   # an Invocation: .outcome, .body, .elapsed_ms

Served routes:
    GET  /2018-06-01/runtime/invocation/next           the next event, with the Lambda-Runtime-*
                                                         headers (request id, deadline, ARN, trace)
    POST /2018-06-01/runtime/invocation/{id}/response  the result (buffered, or streamed in
                                                         Lambda's response-streaming format)
    POST /2018-06-01/runtime/invocation/{id}/error     a handler error
    POST /2018-06-01/runtime/init/error                a failed cold start

Standard library only. As a script it runs one bootstrap on one or more events and prints each
result:

    runtime_api.py BOOTSTRAP EVENT.json [EVENT.json ...] [--env K=V ...] [--name NAME]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import queue
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

API_PREFIX = "/2018-06-01/runtime"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
# Lambda's response-streaming format: a JSON prelude (status, headers, cookies), then eight NUL
# bytes, then the body.
STREAM_PRELUDE_SEPARATOR = b"\0" * 8


@dataclass
class Invocation:
    """One event handed to the bootstrap, and what it answered."""

    request_id: str
    event: bytes
    deadline_ms: int
    # "response", "error", or (set by invoke) "exited", "init_error", "timeout"
    outcome: str | None = None
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    error_type: str | None = None
    streamed: bool = False
    queued_at: float = 0.0
    delivered_at: float | None = None
    finished_at: float | None = None
    # A streamed answer's chunks as they arrived: (time.monotonic(), bytes).
    chunks: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def elapsed_ms(self) -> float:
        """From handing the event over to the answer (the first hand-over includes the cold start)."""
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return (end - self.queued_at) * 1000.0

    def json(self):
        """The answer as JSON (a streamed answer is turned into the buffered API Gateway shape)."""
        return json.loads(self.body.decode("utf-8"))


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A stopped bootstrap resets its idle keep-alive connection: expected, not worth a trace.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class RuntimeApi:
    """The Runtime API server: a queue of events and the invocations in flight."""

    def __init__(self, function_name: str, timeout_s: float = 30.0):
        self.function_name = function_name
        self.timeout_s = timeout_s
        self.events: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_error: dict | None = None
        self.init_error_event = threading.Event()
        # When the bootstrap first asked for an event: the end of its init.
        self.first_next_at: float | None = None
        self.closing = threading.Event()
        self.lock = threading.Lock()
        api = self

        class Handler(_Handler):
            runtime = api

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="runtime-api", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def submit(self, event: bytes) -> Invocation:
        now = time.monotonic()
        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            event=event,
            deadline_ms=int(time.time() * 1000 + self.timeout_s * 1000),
            queued_at=now,
        )
        with self.lock:
            self.invocations[invocation.request_id] = invocation
        self.events.put(invocation)
        return invocation


class _Handler(http.server.BaseHTTPRequestHandler):
    # Keep-alive, as the runtime's HTTP client expects; every response sets Content-Length.
    protocol_version = "HTTP/1.1"
    runtime: RuntimeApi

    def setup(self):
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _reply(self, status: int, body: dict | bytes = b"", headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The bootstrap is gone (stopped, or crashed: invoke() reports that).
            self.close_connection = True

    def _read_body(self) -> tuple[bytes, dict]:
        """The request body (Content-Length or chunked) and any trailers; a chunked body's
        chunks, with when each arrived, are kept in self.arrived."""
        self.arrived = []
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, trailers = [], {}
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    break
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers (Lambda-Runtime-Function-Error-*), then an empty line.
                    while True:
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        name, _, value = line.decode("latin-1").partition(":")
                        trailers[name.strip().lower()] = value.strip()
                    break
                chunks.append(self.rfile.read(size))
                self.arrived.append((time.monotonic(), chunks[-1]))
                self.rfile.readline()  # the CRLF after each chunk
            return b"".join(chunks), trailers
        length = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(length) if length else b""), {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path != f"{API_PREFIX}/invocation/next":
            self._reply(404, {"errorMessage": f"unknown route GET {self.path}"})
            return
        runtime = self.runtime
        with runtime.lock:
            if runtime.first_next_at is None:
                runtime.first_next_at = time.monotonic()
        # Long poll, as Lambda does: the runtime waits here between invocations.
        while True:
            if runtime.closing.is_set():
                # Shutting down: the bootstrap was stopped; nobody reads an answer.
                self.close_connection = True
                return
            try:
                invocation = runtime.events.get(timeout=0.25)
                break
            except queue.Empty:
                continue
        invocation.delivered_at = time.monotonic()
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{runtime.function_name}"
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
        self._reply(
            200,
            invocation.event,
            {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": arn,
                "Lambda-Runtime-Trace-Id": trace,
            },
        )

    def do_POST(self):  # noqa: N802
        body, trailers = self._read_body()
        runtime = self.runtime
        if self.path == f"{API_PREFIX}/init/error":
            runtime.init_error = {
                "type": self.headers.get("Lambda-Runtime-Function-Error-Type"),
                "body": body.decode("utf-8", "replace"),
            }
            runtime.init_error_event.set()
            self._reply(202, {"status": "OK"})
            return
        match = re.fullmatch(rf"{API_PREFIX}/invocation/([^/]+)/(response|error)", self.path)
        if not match:
            self._reply(404, {"errorMessage": f"unknown route POST {self.path}"})
            return
        request_id, kind = match.groups()
        with runtime.lock:
            invocation = runtime.invocations.get(request_id)
        if invocation is None or invocation.done.is_set():
            self._reply(400, {"errorMessage": f"unknown or finished request id {request_id}"})
            return
        invocation.headers = {k.lower(): v for k, v in self.headers.items()}
        invocation.chunks = self.arrived
        if kind == "error":
            invocation.outcome = "error"
            invocation.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            invocation.body = body
        elif trailers.get("lambda-runtime-function-error-type"):
            # A streamed response that failed midway reports it in trailers.
            invocation.outcome = "error"
            invocation.error_type = trailers["lambda-runtime-function-error-type"]
            invocation.body = trailers.get("lambda-runtime-function-error-body", "").encode()
        else:
            invocation.outcome = "response"
            if self.headers.get("Lambda-Runtime-Function-Response-Mode", "").lower() == "streaming":
                invocation.streamed = True
                invocation.body = _buffered_from_stream(body)
            else:
                invocation.body = body
        invocation.finished_at = time.monotonic()
        invocation.done.set()
        self._reply(202, {"status": "OK"})


def _buffered_from_stream(body: bytes) -> bytes:
    """A streamed HTTP response as the buffered API Gateway v2 shape, so callers read one shape."""
    prelude, sep, payload = body.partition(STREAM_PRELUDE_SEPARATOR)
    if not sep:
        return body  # not an HTTP stream: the raw payload
    meta = json.loads(prelude.decode("utf-8") or "{}")
    try:
        text, encoded = payload.decode("utf-8"), False
    except UnicodeDecodeError:
        import base64

        text, encoded = base64.b64encode(payload).decode(), True
    return json.dumps(
        {
            "statusCode": meta.get("statusCode", 200),
            "headers": meta.get("headers", {}),
            "cookies": meta.get("cookies", []),
            "body": text,
            "isBase64Encoded": encoded,
        }
    ).encode()


class LocalFunction:
    """A bootstrap process behind its own Runtime API, started on enter and stopped on exit."""

    def __init__(
        self,
        name: str,
        bootstrap: str | os.PathLike,
        env: dict[str, str],
        log_path: str | os.PathLike | None = None,
        timeout_s: float = 30.0,
        memory_mb: int = 256,
    ):
        self.name = name
        self.bootstrap = Path(bootstrap).resolve()
        self.env = env
        self.log_path = Path(log_path) if log_path else None
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.api = RuntimeApi(name, timeout_s)
        self.process: subprocess.Popen | None = None
        # When the bootstrap was spawned (time.monotonic()).
        self.spawned_at: float | None = None
        self._log = None

    def __enter__(self) -> LocalFunction:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.api.start()
        # Lambda's own variables, then the function's; nothing leaks in from the caller's shell.
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
            "LAMBDA_TASK_ROOT": str(self.bootstrap.parent),
            "_HANDLER": "bootstrap",
        }
        env.update(self.env)
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        self.spawned_at = time.monotonic()
        self.process = subprocess.Popen(
            [str(self.bootstrap)],
            cwd=str(self.bootstrap.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            # Its logs go to the log file, or else to our stderr (stdout stays for results).
            stdout=self._log or sys.stderr,
            stderr=subprocess.STDOUT if self._log else None,
        )

    def invoke(self, event: bytes | str | dict) -> Invocation:
        """Hands `event` to the bootstrap and waits for its answer, its exit, or the time-out."""
        if isinstance(event, dict):
            event = json.dumps(event)
        if isinstance(event, str):
            event = event.encode()
        invocation = self.api.submit(event)
        deadline = invocation.queued_at + self.timeout_s
        while not invocation.done.wait(0.02):
            if self.api.init_error_event.is_set():
                invocation.outcome = "init_error"
                invocation.body = json.dumps(self.api.init_error).encode()
                break
            if self.process is not None and self.process.poll() is not None:
                invocation.outcome = "exited"
                invocation.body = f"the bootstrap exited with status {self.process.returncode}".encode()
                break
            if time.monotonic() > deadline:
                invocation.outcome = "timeout"
                invocation.body = f"no answer within {self.timeout_s:.0f} s".encode()
                break
        if invocation.finished_at is None:
            invocation.finished_at = time.monotonic()
        return invocation

    @property
    def init_ms(self) -> float | None:
        """From spawning the bootstrap to its first request for an event (its init)."""
        if self.spawned_at is None or self.api.first_next_at is None:
            return None
        return (self.api.first_next_at - self.spawned_at) * 1000.0

    def peak_rss_kib(self) -> int | None:
        """The bootstrap's peak resident memory so far (VmHWM), while it runs."""
        if self.process is None:
            return None
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """Stops the bootstrap (SIGTERM, as Lambda's shutdown does) and the server; its exit status."""
        status = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            status = self.process.returncode
        self.api.close()
        if self._log:
            self._log.close()
        return status


def _main() -> int:
    parser = argparse.ArgumentParser(description="Run a Lambda bootstrap locally on events.")
    parser.add_argument("bootstrap")
    parser.add_argument("events", nargs="+", help="event JSON files, invoked in order")
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--name", default="local-function")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    failed = False
    with LocalFunction(args.name, args.bootstrap, env, log_path=None, timeout_s=args.timeout) as fn:
        for path in args.events:
            result = fn.invoke(Path(path).read_bytes())
            print(f"# {path}: {result.outcome} in {result.elapsed_ms:.0f} ms", file=sys.stderr)
            print(result.body.decode("utf-8", "replace"))
            failed |= result.outcome != "response"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
