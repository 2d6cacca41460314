#!/usr/bin/env python3
"""The measuring half of bench/run (which builds, and starts PostgreSQL and PgBouncer first).

Everything runs on 127.0.0.1, and every load is bounded in time (wrk's -d) and concurrency:

1. references: one PostgreSQL connect (pgbench -C, direct and through PgBouncer); one argon2id
   verify as a login runs it (the auth crate's `verify_timing` example) is measured just
   before the login loads it is the reference of;
2. the local runner (DB_MAX_CONNECTIONS=10, direct URL): its memory at start, under 16 and
   64 concurrent logins and after; statements per request (pg_stat_statements) for `me` and a
   personalized-chapter cache hit; chapters made again over a sample of profile edits; wrk
   loads for `me` (alternated with the stack's floor, bench/floor, on the same pool size: its
   one SELECT, and `me`'s own statement), logins, the cache hit and a tutor post;
3. Better-Auth's get-session under the same wrk load, over its own pool of 10;
4. every function's bootstrap and the hello-world one behind a local Lambda Runtime API
   (bench/runtime_timer.py): size, init, cold first response, warm p50/p99, peak RSS.

Then prints the issue's table (figure, primer, reference, goal, ratio, met) and a table per
function, and writes both to --out.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import fanout  # noqa: E402
import runtime_timer  # noqa: E402
import stream_ttfb  # noqa: E402

# The bootstraps: one per function, and the conversations crate's second (the streamed replies
# of its function URL).
FUNCTIONS = ["auth", "profile", "chapters", "conversations", "conversations-stream", "janitor"]
JWT_SECRET = "bench-secret-not-for-production-0123456789abcdef"
BETTER_AUTH_SECRET = "bench-better-auth-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
# Concurrency and duration of every wrk load (the table was measured with 16).
CONNECTIONS = 16
SECONDS = 5


def log(message: str) -> None:
    print(f"--> {message}  [load {load_average()}]", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Http:
    """A keep-alive JSON client of one server."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body=None, token: str | None = None) -> tuple[int, object]:
        headers = {"content-type": "application/json"} if body is not None else {}
        if token:
            headers["authorization"] = f"Bearer {token}"
        payload = json.dumps(body) if body is not None else None
        try:
            self.conn.request(method, path, payload, headers)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection: once more on a new one.
            self.conn.close()
            self.conn.request(method, path, payload, headers)
            response = self.conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    def expect(self, status: int | tuple, method: str, path: str, body=None, token: str | None = None):
        got, answer = self.call(method, path, body, token)
        if got not in (status if isinstance(status, tuple) else (status,)):
            raise SystemExit(f"bench: {method} {path}: {got} instead of {status}: {str(answer)[:300]}")
        return answer


def wait_for(port: int, path: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not answer within 60 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_ticks_by_process() -> dict[str, tuple[str, int]]:
    """CPU time (clock ticks, user and system, reaped children included) of every process, by
    pid, with its name. By pid, not name: a kernel worker renames itself as it changes work, and
    would otherwise count its whole life as used within the load."""
    ticks: dict[str, tuple[str, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        ticks[stat.parent.name] = (name, sum(int(t) for t in rest[11:15]))
    return ticks


def wrk(url: str, connections: int = CONNECTIONS, seconds: int = SECONDS, *, method: str = "GET",
        body: str | None = None, headers: dict[str, str] | None = None, status: int = 200,
        marker: str | None = None) -> dict:
    """One bounded wrk load; fails the bench when any answer is not the expected one."""
    env = dict(os.environ, BENCH_METHOD=method, BENCH_STATUS=str(status))
    if body is not None:
        env["BENCH_BODY"] = body
    if headers:
        env["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in headers.items())
    if marker is not None:
        env["BENCH_MARKER"] = marker
    threads = min(2, connections)
    before, started = cpu_ticks_by_process(), time.monotonic()
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(HERE / "check.lua"), url],
        env=env, capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout
    line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"bench: wrk printed no result for {url}:\n{out}")
    result = json.loads(line[len("BENCH "):])
    after, elapsed = cpu_ticks_by_process(), time.monotonic() - started
    used: dict[str, int] = {}
    for pid, (name, ticks) in after.items():
        used[name] = used.get(name, 0) + max(ticks - before.get(pid, (name, 0))[1], 0)
    total = sum(used.values()) or 1
    # Which programs the load kept busy (the runner, PostgreSQL, wrk itself), and how busy the
    # cores were.
    result["cpu_share"] = {name: t / total for name, t in used.items() if t / total >= 0.01}
    result["cpu_busy"] = total / (os.sysconf("SC_CLK_TCK") * elapsed * (os.cpu_count() or 1))
    if not result["expected"]:
        raise SystemExit(f"bench: {method} {url}: no expected answer at all (first: {result['sample']!r})")
    if result["unexpected"] or result["socket_errors"]:
        # The row that uses this load fails; the run goes on, so the other figures are still measured.
        print(f"bench: {method} {url}: {result['unexpected']} unexpected answers, {result['socket_errors']} "
              f"socket errors (first: {result['sample']!r})", file=sys.stderr)
    return result


def faults(*loads: dict) -> str:
    """What went wrong under these loads, for the report ("" when every answer was the expected one)."""
    said = []
    for load in loads:
        if load["unexpected"] or load["socket_errors"]:
            said.append(f"{load['unexpected']} of {load['requests']} answers unexpected"
                        + (f", {load['socket_errors']} socket errors" if load["socket_errors"] else "")
                        + (f" (first: {load['sample'][:80]})" if load["sample"] else ""))
    return "; ".join(said)


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          capture_output=True, text=True, check=True).stdout.strip()


def statements_per_request(direct_url: str, requests: int, send) -> float:
    """Statements PostgreSQL ran in primer's database per call of `send` (pg_stat_statements)."""
    count_sql = ("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                 "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                 "AND query NOT ILIKE '%pg_stat_statements%'")
    psql(direct_url, "SELECT pg_stat_statements_reset()")
    before = int(psql(direct_url, count_sql))
    for _ in range(requests):
        send()
    return (int(psql(direct_url, count_sql)) - before) / requests


def connect_ms(url: str) -> float:
    """pgbench's average connection time: a new connection for each SELECT 1, for 3 s."""
    script = Path(os.environ.get("TMPDIR", "/tmp")) / f"primer-bench-select1-{os.getpid()}.sql"
    script.write_text("SELECT 1;\n")
    try:
        out = subprocess.run(["pgbench", "-n", "-C", "-c1", "-T3", "-f", str(script), url],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    finally:
        script.unlink()
    return float(re.search(r"average connection time = ([0-9.]+) ms", out).group(1))


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem_kib = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
    version = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{model.group(1) if model else platform.machine()}, {os.cpu_count()} cores",
        "memory": f"{mem_kib / 1048576:.0f} GiB",
        "kernel": platform.release(),
        "rustc": version("rustc", "--version"),
        "node": version("node", "--version"),
        "postgres": version("psql", "--version"),
    }


# -- the local runner -----------------------------------------------------------------------


def start_runner(args, port: int, database_url: str | None = None) -> subprocess.Popen:
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database_url or args.direct_url,
        "DB_MAX_CONNECTIONS": "10",
        "JWT_SECRET": JWT_SECRET,
        "ACCESS_TOKEN_TTL_SECS": "7200",
        "PRIMER_BLOB_DIR": str(args.tmp / "blobs"),
        "PORT": str(port),
        "RUST_LOG": "warn",
        # The abuse limits and quotas would answer the loads with 429s: out of the way.
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": "1000000000",
        "LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000000",
        "QUOTA_USER_MESSAGES_PER_DAY": "1000000000",
    }
    log_file = open(args.out / "runner.log", "ab")
    runner = subprocess.Popen([str(args.target / "local")], env=env, stdout=log_file, stderr=log_file,
                              stdin=subprocess.DEVNULL)
    wait_for(port, "/api/openapi.json", runner, "the local runner")
    return runner


def runner_loads(args, results: dict) -> dict:
    """The runner's memory first (a fresh process), then statements and loads; returns seeds."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    runner = start_runner(args, port)
    try:
        pid = runner.pid
        time.sleep(1)
        memory = {"start_mib": proc_status_kib(pid, "VmRSS") / 1024}
        client = Http(port)
        email = "bench@example.com"
        client.expect(201, "POST", "/api/auth/register", {"email": email, "password": PASSWORD, "name": "Bench"})
        login_body = json.dumps({"email": email, "password": PASSWORD})
        json_headers = {"content-type": "application/json"}
        for connections in (16, 64):
            log(f"runner memory: {connections} concurrent logins for {SECONDS} s")
            load = wrk(f"{base}/api/auth/login", connections, method="POST", body=login_body,
                       headers=json_headers, marker='"access_token"')
            memory[f"peak_{connections}_mib"] = proc_status_kib(pid, "VmHWM") / 1024
            memory[f"logins_{connections}"] = load
        time.sleep(2)
        memory["after_mib"] = proc_status_kib(pid, "VmRSS") / 1024
        results["memory"] = memory

        session = client.expect(200, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})
        token = session["session"]["access_token"]
        profile_event = json.loads((REPO / "events/profile-put.json").read_text())
        client.expect((200, 201), "PUT", "/api/profile", json.loads(profile_event["body"]), token)
        chapter_id = client.expect(200, "GET", "/api/chapters", token=token)["chapters"][0]["id"]
        hit_path = f"/api/chapters/{chapter_id}/personalized?format=json"
        client.expect(200, "GET", hit_path, token=token)  # personalized and stored: a miss
        if client.expect(200, "GET", hit_path, token=token).get("cached") is not True:
            raise SystemExit("bench: the second personalized read was not a cache hit")
        log("regeneration: a sample of profile edits, every chapter read after each")
        results["regeneration"] = regeneration(client, token)
        client.expect((200, 201), "PUT", "/api/profile", json.loads(profile_event["body"]), token)
        conversation = client.expect(201, "POST", "/api/conversations", {"title": "Bench"}, token)
        seeds = {"port": port, "token": token, "email": email, "conversation": conversation["conversation"]["id"],
                 "chapter": chapter_id}

        log("statements per request (pg_stat_statements)")
        results["statements"] = {
            "me": statements_per_request(args.direct_url, 20,
                                         lambda: client.expect(200, "GET", "/api/auth/me", token=token)),
            "cache_hit": statements_per_request(args.direct_url, 20,
                                                lambda: client.expect(200, "GET", hit_path, token=token)),
        }

        auth = {"authorization": f"Bearer {token}"}
        loads = {}
        user_id = client.expect(200, "GET", "/api/auth/me", token=token)["user"]["id"]
        session_id = claims_of(token)["sid"]
        # Alternated, twice each, the better of each kept: a neighbour's burst on the shared
        # machine then spoils one of two, not the ratio.
        runs = {"me": [], "floor": [], "floor_statement": []}
        for _ in range(2):
            log(f"wrk: GET /api/auth/me, {CONNECTIONS} connections, {SECONDS} s")
            runs["me"].append(wrk(f"{base}/api/auth/me", headers=auth, marker=f'"email":"{email}"'))
            log("wrk: the floor (axum + sqlx, one prepared SELECT), same load")
            runs["floor"].append(floor_load(args, f"/user/{user_id}", email))
            log("wrk: the floor on `me`'s statement, same load")
            runs["floor_statement"].append(floor_load(args, f"/session/{session_id}/user/{user_id}", email))
        loads.update({name: max(done, key=lambda r: r["rps"]) for name, done in runs.items()})
        log("wrk: Better-Auth get-session, same load")
        loads["better_auth"] = better_auth_load(args)
        # The login rows' reference, measured just before them: on this shared machine one core's
        # speed drifts over minutes (one verify took 18 to 27 ms in runs of the same evening).
        log("references: argon2id verify, just before the logins")
        results["verify_ms"], results["verify_at_once_rps"] = verify_reference(args)
        log("wrk: logins, 1 connection (latency) and 16 (throughput)")
        # An account of their own: every login opens a session, and a user keeps at most
        # MAX_SESSIONS_PER_USER (100), the oldest ended first, so the loads would sign the
        # reader whose token the rows below use out.
        logins_email = "bench-logins@example.com"
        client.expect(201, "POST", "/api/auth/register", {"email": logins_email, "password": PASSWORD, "name": "Logins"})
        login_body = json.dumps({"email": logins_email, "password": PASSWORD})
        wrong_body = json.dumps({"email": logins_email, "password": "not the password"})
        unknown_body = json.dumps({"email": "nobody@example.com", "password": "not the password"})
        unauthorized = dict(method="POST", headers=json_headers, status=401, marker='"unauthorized"')
        single = {
            "right": lambda: wrk(f"{base}/api/auth/login", 1, method="POST", body=login_body,
                                 headers=json_headers, marker='"access_token"'),
            "wrong": lambda: wrk(f"{base}/api/auth/login", 1, body=wrong_body, **unauthorized),
            "unknown": lambda: wrk(f"{base}/api/auth/login", 1, body=unknown_body, **unauthorized),
        }
        # Each kind twice, in mirrored order, so that a drift of the machine's speed during
        # them weighs on every kind alike: the rows compare the kinds with each other.
        order = ["right", "wrong", "unknown", "unknown", "wrong", "right"]
        done = {kind: [] for kind in single}
        for kind in order:
            done[kind].append(single[kind]())
        for kind, both in done.items():
            loads[f"login_{kind}_1"] = paired(both)
        loads["login_right"] = wrk(f"{base}/api/auth/login", method="POST", body=login_body,
                                   headers=json_headers, marker='"access_token"')
        loads["login_wrong"] = wrk(f"{base}/api/auth/login", body=wrong_body, **unauthorized)
        log("wrk: personalized chapter, cache hit")
        loads["cache_hit"] = wrk(f"{base}{hit_path}", headers=auth, marker='"cached":true')
        log("wrk: tutor post (offline tutor)")
        loads["tutor"] = wrk(
            f"{base}/api/conversations/{seeds['conversation']}/messages", method="POST",
            body='{"content": "What is a ROS 2 topic? ({n})"}', headers={**auth, **json_headers},
            status=201, marker='"reply"')
        results["loads"] = loads
        return seeds
    finally:
        stop(runner)


# Profile edits a reader might make, one after another, as PATCH bodies (JSON merge patches) on
# events/profile-put.json's profile (the two onboarding answers cannot change): some change what
# the book's directives decide for them, some only what no directive reads (the free-text GPU,
# a tool no passage is for).
PROFILE_EDITS = [
    {"software_context": {"preferred_tools": ["Vim", "ROS"]}},
    {"hardware_context": {"specifications": {"gpu": "RTX 4090", "ram": "64GB"}}},
    {"learning_goals": ["simulation", "manipulation", "humanoids"]},
    {"software_context": {"preferred_tools": ["Vim", "ROS", "Docker"]}},
    {"software_context": {"experience_years": "5-10"}},
    {"hardware_context": {"constraints": ["NoInternet", "LowMemory"]}},
    {"software_context": {"languages": ["Python", "Cpp", "Rust"]}},
    {"robotics_experience": "real_hardware"},
    {"software_context": {"skill_levels": {"Python": "Intermediate", "ROS 2": "Intermediate"}}},
    {"hardware_context": {"devices": ["Simulation", "RobotArm"]}},
    {"software_context": {"frameworks": ["ROS 2", "PyTorch", "MoveIt"]}},
    {"learning_goals": ["locomotion"]},
]


def regeneration(client: Http, token: str) -> dict:
    """After each edit of PROFILE_EDITS, every chapter read once: how many the rule engine made
    again (misses) and how many of those came out byte-identical to the copy before the edit (a
    wasted run: the key changed, the text did not). Keyed by the whole profile, as the model's
    copies are, every edit remakes every chapter: that is the reference."""
    ids = [c["id"] for c in client.expect(200, "GET", "/api/chapters", token=token)["chapters"]]

    def read_all() -> dict:
        return {i: client.expect(200, "GET", f"/api/chapters/{i}/personalized?format=json", token=token)
                for i in ids}

    before = read_all()
    remade = identical = 0
    for edit in PROFILE_EDITS:
        client.expect(200, "PATCH", "/api/profile", edit, token)
        after = read_all()
        for i in ids:
            if after[i]["cached"] is False:
                remade += 1
                identical += after[i]["markdown"] == before[i]["markdown"]
            elif after[i]["markdown"] != before[i]["markdown"]:
                raise SystemExit(f"bench: chapter {i} was a hit with another text after {edit}")
        before = after
    return {"edits": len(PROFILE_EDITS), "chapters": len(ids), "remade": remade, "identical": identical}


def claims_of(token: str) -> dict:
    """The claims of a JWT, unchecked (the bench's own token)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def verify_reference(args) -> tuple[float, float]:
    """One argon2id verify as a login runs it (the median, ms), and verifies per second with one
    per core at once (the auth crate's `verify_timing` example)."""
    out = subprocess.run([str(args.target / "examples" / "verify_timing"), "30"], capture_output=True,
                         text=True, check=True).stdout
    return (float(re.search(r"median ([0-9.]+) ms", out).group(1)),
            float(re.search(r"at once: ([0-9.]+) per second", out).group(1)))


def paired(runs: list[dict]) -> dict:
    """Loads of one kind run apart in time, as one: the mean of their p50s and throughputs, and
    the faults of all of them."""
    merged = dict(runs[0])
    for key in ("p50_ms", "rps"):
        merged[key] = statistics.mean(r[key] for r in runs)
    for key in ("unexpected", "socket_errors", "requests"):
        merged[key] = sum(r[key] for r in runs)
    merged["sample"] = next((r["sample"] for r in runs if r["sample"]), "")
    return merged


def floor_load(args, path: str, email: str) -> dict:
    """bench/floor's `path` on the runner's database and pool size, under the `me` load."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": args.direct_url, "DB_MAX_CONNECTIONS": "10",
           "PORT": str(port)}
    server = subprocess.Popen([str(args.target / "bench-floor")], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(args.out / "floor.log", "ab"), stdin=subprocess.DEVNULL)
    try:
        wait_for(port, path, server, "the floor server")
        return wrk(f"http://127.0.0.1:{port}{path}", marker=f'"email":"{email}"')
    finally:
        stop(server)


def better_auth_load(args) -> dict:
    env = dict(os.environ, DATABASE_URL=args.better_auth_url, BETTER_AUTH_SECRET=BETTER_AUTH_SECRET)
    server = subprocess.Popen(["node", str(HERE / "better_auth_server.mjs")], env=env, stdout=subprocess.PIPE,
                              stderr=open(args.out / "better-auth.log", "ab"), stdin=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"bench: Better-Auth did not start (see {args.out / 'better-auth.log'})")
        ready = json.loads(line)
        return wrk(f"http://127.0.0.1:{ready['port']}/api/auth/get-session",
                   headers={"cookie": f"better-auth.session_token={ready['cookie']}"},
                   marker=f'"email":"{ready["email"]}"')
    finally:
        stop(server)


# -- the bootstraps -------------------------------------------------------------------------


def cold_starts(args, seeds: dict, results: dict) -> None:
    env = {
        "DATABASE_URL": args.pooled_url,
        "JWT_SECRET": JWT_SECRET,
        "PRIMER_BLOB_DIR": str(args.tmp / "blobs"),
        "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
        # As template.yaml configures the functions.
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "RUST_LOG": "info",
        # The streamed post stores a message per invocation: out of the daily quota's way.
        "QUOTA_USER_MESSAGES_PER_DAY": "1000000000",
    }
    subs = {"REPLACE_WITH_ACCESS_TOKEN": seeds["token"], "REPLACE_WITH_CONVERSATION_ID": seeds["conversation"]}
    # One route per function that reads the database, and what its answer must contain.
    cases = {
        "hello": ("profile-get.json", 200, "hello"),
        "auth": ("auth-me-get.json", 200, seeds["email"]),
        "profile": ("profile-get.json", 200, "software_context"),
        "chapters": ("chapters-list.json", 200, '"id"'),
        "conversations": ("conversations-list.json", 200, "Bench"),
        # A question, answered by the offline tutor as a stream of events.
        "conversations-stream": ("conversations-stream-messages-post.json", 201, "event: done"),
        "janitor": ("janitor-schedule.json", None, None),
    }
    bootstraps = {}
    for name, (event_file, status, marker) in cases.items():
        binary = args.target / ("bench-hello" if name == "hello" else name)
        event = (REPO / "events" / event_file).read_text()
        for text, value in subs.items():
            event = event.replace(text, value)
        log(f"cold starts: {name} ({args.runs} runs, {args.warm} warm invocations)")
        try:
            bootstraps[name] = runtime_timer.measure(
                str(binary), event.encode(), env, args.runs, args.warm, status, marker,
                log=str(args.out / f"{name}.log"), name=name)
        except runtime_timer.BadAnswer as e:
            raise SystemExit(f"bench: {name}: {e} (log: {args.out / (name + '.log')})")
    results["bootstraps"] = bootstraps


# -- TLS ----------------------------------------------------------------------------------------


def tls(args, seeds: dict, results: dict) -> None:
    """The functions on PostgreSQL over TLS (bench/run turned it on with a CA of its own):
    `auth`'s cold start and warm `me` through a PgBouncer that ends TLS (as Neon's pooled URL
    does: the path production takes) and directly on PostgreSQL, on sslmode=verify-full and
    require, beside the plain direct URL (sslmode=disable); one TLS connect of each (pgbench -C);
    and the runner's `me` under wrk over TLS."""
    verify_full, require = f"{args.tls_url}&sslmode=verify-full", f"{args.tls_url}&sslmode=require"
    pooled = f"{args.pooled_tls_url}&sslmode=verify-full"
    log("TLS: one PostgreSQL connect over TLS, direct and through PgBouncer (pgbench -C)")
    out = {"connect_ms": connect_ms(verify_full), "pooled_connect_ms": connect_ms(pooled)}
    event = (REPO / "events/auth-me-get.json").read_text().replace("REPLACE_WITH_ACCESS_TOKEN", seeds["token"])
    env = {"JWT_SECRET": JWT_SECRET, "PRIMER_BLOB_DIR": str(args.tmp / "blobs"),
           "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true", "AWS_LAMBDA_LOG_FORMAT": "JSON", "RUST_LOG": "info"}
    for name, url in (("pooled", pooled), ("plain", args.direct_url), ("verify-full", verify_full),
                      ("require", require)):
        log(f"TLS: auth's cold starts and warm `me`, {name}")
        try:
            out[name] = runtime_timer.measure(str(args.target / "auth"), event.encode(), dict(env, DATABASE_URL=url),
                                              args.runs, args.warm, 200, seeds["email"],
                                              log=str(args.out / "tls.log"), name="auth")
        except runtime_timer.BadAnswer as e:
            raise SystemExit(f"bench: auth over TLS ({name}): {e} (log: {args.out / 'tls.log'})")
    log("TLS: wrk on the runner's `me`, verify-full")
    port = free_port()
    runner = start_runner(args, port, verify_full)
    try:
        out["me_load"] = wrk(f"http://127.0.0.1:{port}/api/auth/me", headers={"authorization": f"Bearer {seeds['token']}"},
                             marker=seeds["email"])
    finally:
        stop(runner)
    results["tls"] = out


# -- streaming --------------------------------------------------------------------------------

STREAMED = 30


def streaming(args, results: dict) -> None:
    """The first `delta` after the model stub's first chunk (bench/stream_ttfb.py), through the
    runner and through the streaming bootstrap, both reading the stub on their own clock."""
    log(f"streaming: {STREAMED} replies through the runner, then the streaming bootstrap")
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": args.direct_url, "DB_MAX_CONNECTIONS": "10",
           "JWT_SECRET": JWT_SECRET, "PRIMER_BLOB_DIR": str(args.tmp / "blobs"),
           "QUOTA_USER_MESSAGES_PER_DAY": "1000000000"}
    runner = stream_ttfb.measure(str(args.target / "local"), env, STREAMED)
    # The bootstrap answers a user and conversation the runner made: a token of its own.
    port = free_port()
    server = start_runner(args, port)
    try:
        client = Http(port)
        email = "stream-bootstrap@example.com"
        token = client.expect(201, "POST", "/api/auth/register",
                              {"email": email, "password": PASSWORD, "name": "Bench"})["session"]["access_token"]
        conversation = client.expect(201, "POST", "/api/conversations", {"title": "Stream"}, token)
    finally:
        stop(server)
    event = (REPO / "events/conversations-stream-messages-post.json").read_text()
    event = event.replace("REPLACE_WITH_ACCESS_TOKEN", token).replace(
        "REPLACE_WITH_CONVERSATION_ID", conversation["conversation"]["id"])
    bootstrap_env = {"DATABASE_URL": args.pooled_url, "JWT_SECRET": JWT_SECRET,
                     "PRIMER_BLOB_DIR": str(args.tmp / "blobs"), "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
                     "AWS_LAMBDA_LOG_FORMAT": "JSON", "RUST_LOG": "info",
                     "QUOTA_USER_MESSAGES_PER_DAY": "1000000000", "BENCH_LOG": str(args.out / "stream.log")}
    bootstrap = stream_ttfb.measure_bootstrap(str(args.target / "conversations-stream"), bootstrap_env,
                                              json.loads(event), STREAMED)
    results["streaming"] = {"runner": runner, "bootstrap": bootstrap}


# -- the fan-out -----------------------------------------------------------------------------

# Instances at once; each with a pool of FANOUT_CONNECTIONS, on a PgBouncer with
# FANOUT_SERVER_POOL server connections (bench/run starts it, this sets its pool size).
FANOUT_SIZES = (1, 8, 32, 64)
FANOUT_CONNECTIONS = 1
FANOUT_SERVER_POOL = 16
# The exhausted run: the largest N on a PgBouncer taking fewer clients than it has connections.
FANOUT_MAX_CLIENT_CONN = 32
FANOUT_WARM_UP_S, FANOUT_WINDOW_S = 2, 8


def better_of(runs: list[dict]) -> dict:
    """The run of an N with the most answers per second, with the errors, refusals and PgBouncer
    queue of all of them (the worst queue seen), and each run's answers per second."""
    best = dict(max(runs, key=lambda r: r["rps"]))
    best["errors"] = sum(r["errors"] for r in runs)
    best["counts"] = {**best["counts"], "refused": sum(r["counts"].get("refused", 0) for r in runs)}
    best["samples"] = {k: v for r in runs for k, v in r["samples"].items()}
    queues = [r["pooler"] for r in runs if r["pooler"]]
    best["pooler"] = max(queues, key=lambda q: (q["cl_waiting"], q["maxwait_ms"])) if queues else None
    best["each_rps"] = [r["rps"] for r in runs]
    return best


def fan_out(args, seeds: dict, results: dict) -> None:
    subs = {"REPLACE_WITH_ACCESS_TOKEN": seeds["token"], "REPLACE_WITH_CONVERSATION_ID": seeds["conversation"],
            # The chapter the runner's loads made and read back as a cache hit.
            "/api/chapters/1/": f"/api/chapters/{seeds['chapter']}/", '"id": "1"': f'"id": "{seeds["chapter"]}"'}
    routes = []
    for name, event_file in [("auth", "auth-me-get.json"), ("profile", "profile-get.json"),
                             ("conversations", "conversations-list.json"),
                             ("chapters", "chapters-personalized.json")]:
        event = (REPO / "events" / event_file).read_text()
        for text, value in subs.items():
            event = event.replace(text, value)
        routes.append({"name": name, "binary": str(args.target / name), "event": event})
    env = {
        "DATABASE_URL": args.fanout_url,
        "DB_MAX_CONNECTIONS": str(FANOUT_CONNECTIONS),
        "JWT_SECRET": JWT_SECRET,
        "PRIMER_BLOB_DIR": str(args.tmp / "blobs"),
        "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "RUST_LOG": "info",
    }
    log_path = args.out / "fanout.log"
    # Online, through the admin console: the bouncer bench/run started for this is otherwise
    # configured as the others.
    psql(args.fanout_admin_url, f"SET default_pool_size = {FANOUT_SERVER_POOL}")
    # Every N twice, the second time in the other order, the better throughput kept and the
    # faults of both: a neighbour's burst on the shared machine then spoils one run of an N, not
    # the verdict, and no error is dropped with the run it came in.
    done: dict[int, list[dict]] = {n: [] for n in FANOUT_SIZES}
    for n in [*FANOUT_SIZES, *reversed(FANOUT_SIZES)]:
        log(f"fan-out: {n} instances, {FANOUT_CONNECTIONS} connection each, PgBouncer pool {FANOUT_SERVER_POOL}")
        done[n].append(fanout.run([routes[i % len(routes)] for i in range(n)], env, log_path,
                                  args.fanout_admin_url, FANOUT_WARM_UP_S, FANOUT_WINDOW_S))
    runs = {n: better_of(both) for n, both in done.items()}
    n = max(FANOUT_SIZES)
    log(f"fan-out, exhausted: {n} instances, PgBouncer's max_client_conn {FANOUT_MAX_CLIENT_CONN}")
    psql(args.fanout_admin_url, f"SET max_client_conn = {FANOUT_MAX_CLIENT_CONN}")
    try:
        exhausted = fanout.run([routes[i % len(routes)] for i in range(n)], env, log_path, args.fanout_admin_url,
                               FANOUT_WARM_UP_S, FANOUT_WINDOW_S / 2)
    finally:
        psql(args.fanout_admin_url, "SET max_client_conn = 2000")
    results["fanout"] = {"runs": runs, "exhausted": exhausted}


# -- the report -----------------------------------------------------------------------------

# The stripped auth bootstrap before provider sign-in (main before #24, as its commit edd96f9
# recorded it): building auth without the core crate's `oauth` feature is not possible (its
# routes are always compiled), so the size it adds is read against that record.
AUTH_BEFORE_SIGN_IN_BYTES = 12_897_152

# Why a goal is missed and what was tried, printed in the row when it is (keyed by the
# figure as report() names it). Only what is known; a row without a note is an open question.
WHY_NOT = {
    "login req/s (16 connections)":
        "the ceiling gives both cores to hashing, but two hashes at once run slower than one alone, "
        "and PostgreSQL and the kernel's networking for the login's round trips share the cores "
        "(see the reference column; docs/performance.md: a profile of this load); tried: one hasher per core, "
        "each reusing its argon2 memory, a slot held until its hash is done, and fewer round trips "
        "per login (18 -> 14: the check is released in the session's transaction, the login "
        "recorded with the hash's confirmation)",
    "`GET /api/auth/me` / the stack's floor":
        "the two rows below split the gap: `me`'s statement served bare, against the floor's, "
        "and the stack around it, against that; the CPU per request (in the rows) is larger in "
        "the runner and in PostgreSQL: a profile spreads the runner's extra over the token check "
        "(7 % of its samples), the request's log span (3 %), axum's and tower's layers and CORS, "
        "the ten-column answer's JSON and malloc, with no single part to cut; PostgreSQL runs "
        "the session-and-user join of ten columns against one row of three (docs/performance.md, "
        "Open); tried: one request layer instead of three, jsonwebtoken's validation built once, "
        "the token's header read once, more malloc arenas, other shapes of the session check, "
        "and (to bound them, not kept) the runner without its span, CORS, hardened connection "
        "and deadline: still under 0.80 × in three of four rounds",
    "fan-out throughput, 64 instances / the best N":
        "not the pooler (no client queued in PgBouncer, its CPU per answer 13-20 % more at N = 64): "
        "the bootstraps' CPU per answer is 11-51 % more at N = 64 than at N = 8 with as many "
        "context switches and page faults per answer, most of it the kernel's at the end of a "
        "switch, the rest their code slower everywhere at once: by a profile's reading, switching "
        "among 67 processes on two vCPUs starts cold (TLB, caches), at a cost that follows the "
        "host's load (0.78-1.02 × in rounds of the same half hour, while any N alone drifts "
        "10-25 % within minutes; docs/performance.md, \"Where the fan-out's N = 64 loses its "
        "throughput\" and \"the fan-out's drift between passes\"); tried: one-thread bootstraps "
        "and driver, each N twice in mirrored order",
    "cold first response, DB route (pooled), ms":
        "the janitor's event is a whole sweep (six statements on two connections, one per module "
        "that owns tables to clean, run at once), not one route; conversations-stream's is a "
        "question stored, answered and its reply stored, streamed (tried: Nagle's algorithm off on "
        "the runtime's connections to the Runtime API, which held each streamed answer about "
        "40 ms: app::runtime_api_without_nagle)",
    "bootstrap size (stripped), MB":
        "the AWS SDK (S3 and SES clients, aws-config with its STS client, their HTTP client) is "
        "most of the difference: in chapters its crates (aws_*, and h2, which only its HTTP client "
        "links) are 2.0 of 8.0 MiB of machine code (cargo bloat --crates), and the file's other "
        "5 MB are tables that grow with the code (read-only data 2.2, unwind tables 1.3, relocations "
        "0.9, vtables 0.5: size -A); tried: the core crate's features (profile and conversations "
        "link no SDK), one crypto library (ring, no aws-lc-rs), the SDK's crates at opt-level z "
        "(chapters 16.4 → 14.1 MB), no regular-expression engine (the log filter), JWT crypto for "
        "HS256 only; every crate at opt-level z but argon2 gave chapters 11.9 MB and fat LTO 6.9 MB "
        "for profile against 8.4, both given up for speed and build time (see Cargo.toml); not "
        "tried: no unwind tables or a non-PIE binary, which would cost backtraces and address "
        "randomisation",
}



def cpu_per_request(load: dict, server: str, said: str) -> str:
    """Where a wrk load's CPU went, in µs per request: the server, PostgreSQL, and wrk (counted
    under this script, whose child it is)."""
    total_s = load["cpu_busy"] * load["seconds"] * (os.cpu_count() or 1)
    share = load["cpu_share"]

    def us(name: str) -> float:
        return share.get(name, 0.0) * total_s / load["requests"] * 1e6

    return (f"CPU per request {total_s / load['requests'] * 1e6:.0f} µs: {said} {us(server):.0f}, "
            f"PostgreSQL {us('postgres'):.0f}, wrk {us('python3'):.0f}")


def fault_note(run: dict) -> dict:
    """A fan-out run as a load for row(): its errors and refusals become the row's fault."""
    bad = run["errors"] + run["counts"].get("refused", 0)
    sample = next(iter(run["samples"].items()), ("", ""))
    return {"unexpected": bad, "socket_errors": 0, "requests": sum(run["counts"].values()),
            "sample": f"{sample[0]}: {sample[1]}" if bad else ""}


def report(results: dict) -> str:
    m, b, loads, mem, st = (results["machine"], results["bootstraps"], results["loads"],
                            results["memory"], results["statements"])
    hello = b["hello"]
    fns = [f for f in FUNCTIONS]
    verify = results["verify_ms"]
    connect = results["connect_pooled_ms"]
    cores = os.cpu_count() or 1
    rows = []

    def row(figure, primer, reference, goal, ratio, met, *loads_used):
        wrong = faults(*loads_used)
        if wrong:
            primer, met = f"{primer} — {wrong}", False
        rows.append((figure, primer, reference, goal, ratio, met, "" if met is not False or wrong else WHY_NOT.get(figure, "")))

    me, ba = loads["me"], loads["better_auth"]
    row("`GET /api/auth/me` req/s", f"{me['rps']:,.0f} (p50 {me['p50_ms']:.1f} ms)",
        f"Better-Auth get-session {ba['rps']:,.0f} (p50 {ba['p50_ms']:.1f} ms)",
        "≥ 20 × the peer", f"{me['rps'] / ba['rps']:.1f} ×", me["rps"] >= 20 * ba["rps"], me, ba)
    floor = loads["floor"]
    row("`GET /api/auth/me` / the stack's floor",
        f"{me['rps']:,.0f} req/s (p50 {me['p50_ms']:.1f} ms); {cpu_per_request(me, 'local', 'the runner')}",
        f"axum + sqlx, one prepared SELECT, pool of 10: {floor['rps']:,.0f} (p50 {floor['p50_ms']:.1f} ms); "
        f"{cpu_per_request(floor, 'bench-floor', 'the floor')}",
        "≥ 0.80 ×", f"{me['rps'] / floor['rps']:.2f} ×", me["rps"] >= 0.8 * floor["rps"], me, floor)
    # The gap in two: what `me`'s statement costs against the floor's one SELECT, and what the
    # stack around it costs against that statement served bare.
    statement = loads["floor_statement"]
    row("the floor on `me`'s statement / the floor",
        f"the session joined with its user, ten columns, `me`'s answer: {statement['rps']:,.0f} req/s "
        f"(p50 {statement['p50_ms']:.1f} ms); {cpu_per_request(statement, 'bench-floor', 'the floor')}",
        f"the floor {floor['rps']:,.0f}", "—", f"{statement['rps'] / floor['rps']:.2f} ×", None, statement, floor)
    row("`GET /api/auth/me` / the floor on `me`'s statement",
        "the token, the hardened server, the request's layer (id, span, deadline, error shape), CORS",
        f"the floor on `me`'s statement {statement['rps']:,.0f}", "—",
        f"{me['rps'] / statement['rps']:.2f} ×", None, me, statement)
    row("DB statements on `me`", f"{st['me']:g} per request", "—", "1 round trip",
        f"{st['me']:g}", st["me"] <= 1)
    hit = loads["cache_hit"]
    row("personalized chapter, cache hit", f"{st['cache_hit']:g} statements + 1 object read, "
        f"{hit['rps']:,.0f} req/s (p50 {hit['p50_ms']:.1f} ms)", "—", "≤ 2 round trips + 1 object read",
        f"{st['cache_hit']:g}", st["cache_hit"] <= 2, hit)
    right, wrong = loads["login_right_1"], loads["login_wrong_1"]
    worst = max(right["p50_ms"], wrong["p50_ms"])
    row("login p50 / argon2id verify (1 connection)",
        f"right {right['p50_ms']:.1f} ms, wrong {wrong['p50_ms']:.1f} ms", f"verify {verify:.1f} ms",
        "≤ 1.15 ×", f"{worst / verify:.2f} ×", worst <= 1.15 * verify, right, wrong)
    unknown = loads["login_unknown_1"]
    row("login p50, unknown e-mail / wrong password", f"{unknown['p50_ms']:.1f} ms",
        f"wrong password {wrong['p50_ms']:.1f} ms", "the same (0.85–1.15 ×)",
        f"{unknown['p50_ms'] / wrong['p50_ms']:.2f} ×", 0.85 <= unknown["p50_ms"] / wrong["p50_ms"] <= 1.15,
        unknown, wrong)
    ceiling = cores * 1000 / verify
    slowest = min(loads["login_right"]["rps"], loads["login_wrong"]["rps"])
    at_once = results["verify_at_once_rps"]
    row(f"login req/s ({CONNECTIONS} connections)",
        f"right {loads['login_right']['rps']:.0f}, wrong {loads['login_wrong']['rps']:.0f}",
        f"cores ÷ verify = {ceiling:.0f}; {cores} verifies at once, nothing else running: {at_once:.0f} "
        f"({at_once / ceiling:.0%}), the login load {slowest / at_once:.0%} of that; under the right "
        f"logins the cores were {loads['login_right']['cpu_busy']:.0%} busy, PostgreSQL "
        f"{loads['login_right']['cpu_share'].get('postgres', 0):.0%} of that",
        "≥ 90 %", f"{slowest / ceiling:.0%}", slowest >= 0.9 * ceiling,
        loads["login_right"], loads["login_wrong"])
    for n in (16, 64):
        peak = mem[f"peak_{n}_mib"]
        row(f"runner peak RSS, {n} concurrent logins for {SECONDS} s", f"{peak:.1f} MB",
            f"{mem['start_mib']:.1f} MB at start", "≤ 64 MB peak", f"{peak / mem['start_mib']:.1f} ×", peak <= 64,
            mem[f"logins_{n}"])
    row("runner RSS 2 s after the logins", f"{mem['after_mib']:.1f} MB", f"{mem['start_mib']:.1f} MB at start",
        "≤ 64 MB, bounded", f"{mem['after_mib'] / mem['start_mib']:.1f} ×", mem["after_mib"] <= 64)
    rg = results["regeneration"]
    reads = rg["edits"] * rg["chapters"]
    row(f"chapters made again over {rg['edits']} profile edits ({rg['chapters']} chapters)",
        f"{rg['remade']} rule runs ({rg['identical']} byte-identical to the copy before)",
        f"keyed by the whole profile (as a model's copies are): {reads} runs, or model calls",
        "no byte-identical remake", f"{reads - rg['remade']} runs saved ({1 - rg['remade'] / reads:.0%})",
        rg["identical"] == 0)
    tutor = loads["tutor"]
    row("tutor post req/s (offline tutor)", f"{tutor['rps']:,.0f} (p50 {tutor['p50_ms']:.1f} ms)", "—", "—",
        "—", None, tutor)

    t = results["tls"]
    first = t["pooled"]["first_ms"]
    row("cold first response over TLS through PgBouncer (verify-full, as Neon's pooled URL), `auth` `me`, ms",
        f"{first:.1f}", f"hello {hello['first_ms']:.1f} + one TLS connect through PgBouncer {t['pooled_connect_ms']:.1f}",
        "≤ hello + TLS connect + 5 ms", f"{first - hello['first_ms'] - t['pooled_connect_ms']:+.1f} ms over hello + connect",
        first <= hello["first_ms"] + t["pooled_connect_ms"] + 5)
    for mode in ("verify-full", "require"):
        first = t[mode]["first_ms"]
        row(f"cold first response over TLS, direct ({mode}), `auth` `me`, ms",
            f"{first:.1f} (plain, sslmode=disable: {t['plain']['first_ms']:.1f})",
            f"hello {hello['first_ms']:.1f} + one TLS connect {t['connect_ms']:.1f}", "≤ hello + TLS connect + 5 ms",
            f"{first - hello['first_ms'] - t['connect_ms']:+.1f} ms over hello + connect",
            first <= hello["first_ms"] + t["connect_ms"] + 5)
    row("warm `me` over TLS (verify-full), bootstrap p50 / p99, ms",
        f"{t['verify-full']['warm_p50_ms']:.2f} / {t['verify-full']['warm_p99_ms']:.2f} "
        f"(require {t['require']['warm_p50_ms']:.2f} / {t['require']['warm_p99_ms']:.2f})",
        f"plain {t['plain']['warm_p50_ms']:.2f} / {t['plain']['warm_p99_ms']:.2f}; through PgBouncer over TLS "
        f"{t['pooled']['warm_p50_ms']:.2f} / {t['pooled']['warm_p99_ms']:.2f}", "—",
        f"{t['verify-full']['warm_p50_ms'] / t['plain']['warm_p50_ms']:.2f} × (p50)", None)
    tl = t["me_load"]
    row("`GET /api/auth/me` req/s over TLS (verify-full), runner", f"{tl['rps']:,.0f} (p50 {tl['p50_ms']:.1f} ms)",
        f"plain: {me['rps']:,.0f} (p50 {me['p50_ms']:.1f} ms)", "—", f"{tl['rps'] / me['rps']:.2f} ×", None, tl)
    sr = results["streaming"]
    floor = statistics.median(sr["runner"]["floor"])
    for where, r in (("the runner", sr["runner"]), ("the streaming bootstrap (at its Runtime API)", sr["bootstrap"])):
        added = statistics.median(r["added"])
        row(f"first `delta` after the model's first chunk, through {where}",
            f"median {added:.1f} ms, p90 {runtime_timer.percentile(r['added'], 90):.1f} ms ({r['n']} replies)",
            f"the stub's first chunk; its direct read {floor:.1f} ms", "≤ + 5 ms",
            f"+{added:.1f} ms", added <= 5)
    fo = results["fanout"]
    mix = "`me`, profile, conversation list, cached chapter in turn"
    for n, r in fo["runs"].items():
        pool = r["pooler"]
        row(f"fan-out, {n} instance{'s' if int(n) > 1 else ''} × {FANOUT_CONNECTIONS} connection, "
            f"PgBouncer pool {FANOUT_SERVER_POOL}",
            f"{r['rps']:,.0f} answers/s (runs: {' / '.join(f'{x:,.0f}' for x in r['each_rps'])}), "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; "
            f"{r['errors']} errors, {r['counts'].get('refused', 0)} refused"
            + (f"; mid-window {pool['cl_waiting']} clients queued in PgBouncer (longest {pool['maxwait_ms']:.1f} ms)"
               if pool else ""),
            "`me` alone" if int(n) == 1 else mix, "0 errors", f"{r['errors']}",
            r["errors"] == 0 and not r["counts"].get("refused"),
            fault_note(r))
    # N = 1 runs `me` alone, the others the same mix: the verdict compares like with like.
    mixed = {n: r for n, r in fo["runs"].items() if int(n) > 1}
    largest = max(mixed, key=int)
    best = max(mixed, key=lambda n: mixed[n]["rps"])
    row(f"fan-out throughput, {largest} instances / the best N", f"{mixed[largest]['rps']:,.0f} answers/s",
        f"N = {best}: {mixed[best]['rps']:,.0f}", "≥ 0.90 ×", f"{mixed[largest]['rps'] / mixed[best]['rps']:.3f} ×",
        mixed[largest]["rps"] >= 0.9 * mixed[best]["rps"])
    ex = fo["exhausted"]
    c = ex["counts"]
    row(f"fan-out, exhausted: {ex['instances']} instances, PgBouncer max_client_conn {FANOUT_MAX_CLIENT_CONN}",
        f"{c.get('served', 0)} served, {c.get('refused', 0)} 503 with Retry-After, {ex['errors']} else"
        + (f" ({'; '.join(f'{k}: {v[:100]}' for k, v in ex['samples'].items() if k != 'refused')})" if ex["errors"] else ""),
        "—", "every answer 2xx or 503 + Retry-After, none hangs", f"{ex['errors']} else",
        ex["errors"] == 0 and c.get("refused", 0) > 0)

    def per_function(key, fmt):
        return ", ".join(f"{f} {fmt(b[f][key])}" for f in fns)

    mb = lambda n: f"{n / 1e6:.1f}"
    largest = max(b[f]["size_bytes"] for f in fns)
    row("bootstrap size (stripped), MB", per_function("size_bytes", mb), f"hello-world {mb(hello['size_bytes'])}",
        "≤ 8 MB each", f"{largest / hello['size_bytes']:.1f} × (largest)", largest <= 8e6)
    slowest_init = max(b[f]["init_ms"] for f in fns)
    row("init (spawn → first `/next`), ms", per_function("init_ms", lambda v: f"{v:.1f}"),
        f"hello-world {hello['init_ms']:.1f}", "≤ hello-world + 2 ms, every function",
        f"+{slowest_init - hello['init_ms']:.1f} ms (slowest)", slowest_init <= hello["init_ms"] + 2)
    slowest_first = max(b[f]["first_ms"] for f in fns)
    budget = hello["first_ms"] + connect + 5
    row("cold first response, DB route (pooled), ms", per_function("first_ms", lambda v: f"{v:.1f}"),
        f"hello {hello['first_ms']:.1f} + one PostgreSQL connect {connect:.1f}", "≤ hello + connect + 5 ms",
        f"{slowest_first - hello['first_ms'] - connect:+.1f} ms over hello + connect (slowest)",
        slowest_first <= budget)
    a = b["auth"]
    row("`auth` with provider sign-in (RSA/EC ID tokens, TLS to providers): size, init, cold `me`",
        f"{mb(a['size_bytes'])} MB, init {a['init_ms']:.1f} ms, cold {a['first_ms']:.1f} ms",
        f"before provider sign-in (git history, commit edd96f9): {mb(AUTH_BEFORE_SIGN_IN_BYTES)} MB; "
        f"hello init {hello['init_ms']:.1f}, cold {hello['first_ms']:.1f} ms",
        "size: as measured (see the size row); init ≤ hello + 2 ms",
        f"+{(a['size_bytes'] - AUTH_BEFORE_SIGN_IN_BYTES) / 1e6:.2f} MB; init +{a['init_ms'] - hello['init_ms']:.1f} ms",
        a["init_ms"] <= hello["init_ms"] + 2)
    biggest = max(b[f]["peak_rss_mib"] for f in fns)
    row("peak RSS per function, MB", per_function("peak_rss_mib", lambda v: f"{v:.1f}"),
        f"hello-world {hello['peak_rss_mib']:.1f}", "≤ 4 × hello-world",
        f"{biggest / hello['peak_rss_mib']:.1f} × (largest)", biggest <= 4 * hello["peak_rss_mib"])

    lines = [
        f"primer benchmarks, {m['date']}: {m['cpu']}, {m['memory']}, Linux {m['kernel']}; {m['rustc']}; "
        f"Node {m['node']}; {m['postgres']}",
        f"load average at start {results['load_start']}, at the end {results['load_end']} "
        "(the machine is shared: compare ratios, measured in the same run)",
        f"one PostgreSQL connect (pgbench -C): direct {results['connect_direct_ms']:.1f} ms, "
        f"through PgBouncer {connect:.1f} ms; one argon2id verify {verify:.1f} ms",
        "",
        "| figure | primer | reference | goal | ratio | met |",
        "|---|---|---|---|---|---|",
    ]
    for figure, primer, reference, goal, ratio, met, why in rows:
        verdict = "—" if met is None else ("yes" if met else "**no**")
        if why:
            verdict += f": {why}"
        lines.append(f"| {figure} | {primer} | {reference} | {goal} | {ratio} | {verdict} |")
    lines += [
        "",
        "| bootstrap | size MB | init ms | cold first response ms | warm p50 ms | warm p99 ms | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ["hello", *fns]:
        r = b[name]
        lines.append(f"| {name} | {mb(r['size_bytes'])} | {r['init_ms']:.1f} | {r['first_ms']:.1f} | "
                     f"{r['warm_p50_ms']:.2f} | {r['warm_p99_ms']:.2f} | {r['peak_rss_mib']:.1f} |")
    lines += [
        "",
        f"wrk: {CONNECTIONS} connections (2 threads), {SECONDS} s per load unless stated; the runner with "
        "DB_MAX_CONNECTIONS=10 on the direct URL, RUST_LOG=warn; Better-Auth with a pg pool of 10 on the "
        f"direct URL; cold starts: median of {results['runs']} spawns, {results['warm']} warm invocations, "
        "the functions on the PgBouncer (transaction mode) URL as deployed, RUST_LOG=info, JSON logs.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="primer's benchmarks (run through bench/run)")
    parser.add_argument("--target", type=Path, required=True, help="the release binaries' folder")
    parser.add_argument("--direct-url", required=True)
    parser.add_argument("--pooled-url", required=True)
    parser.add_argument("--better-auth-url", required=True)
    parser.add_argument("--tls-url", required=True, help="PostgreSQL over TLS, with sslrootcert (no sslmode)")
    parser.add_argument("--pooled-tls-url", required=True,
                        help="a PgBouncer that takes TLS from its clients, with sslrootcert (no sslmode)")
    parser.add_argument("--fanout-url", required=True, help="a PgBouncer with a server pool of 16, for the fan-out")
    parser.add_argument("--fanout-admin-url", required=True, help="its admin console")
    parser.add_argument("--tmp", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True, help="where the report and the raw JSON go")
    args = parser.parse_args()
    (args.tmp / "blobs").mkdir(parents=True, exist_ok=True)
    # The logs of this run (the runner's, Better-Auth's, each bootstrap's) go beside the report.
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.log"):
        old.unlink()

    results = {"machine": machine(), "load_start": load_average(), "runs": args.runs, "warm": args.warm}
    log("references: PostgreSQL connect")
    results["connect_direct_ms"] = connect_ms(args.direct_url)
    results["connect_pooled_ms"] = connect_ms(args.pooled_url)

    seeds = runner_loads(args, results)
    cold_starts(args, seeds, results)
    tls(args, seeds, results)
    fan_out(args, seeds, results)
    streaming(args, results)
    results["load_end"] = load_average()

    text = report(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(text)
    print(f"(also in {args.out / 'report.md'}, raw figures in {args.out / 'results.json'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
