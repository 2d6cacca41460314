#!/usr/bin/env python3
"""The fan-out bench: N function bootstraps at once, each behind its own local Runtime API and
fed one event after another (as Lambda feeds an instance), all on one PgBouncer in transaction
mode with a server pool smaller than the instances' connections (production: many instances,
each a process with a pool of one or two, through Neon's pooler).

The instances take the four functions' read routes in turn (`me`, the profile, the
conversation list, a personalized chapter that is a cache hit); N = 1 is `me` alone. Drivers
are worker processes of this script (at most FUNCTIONS_PER_WORKER instances each), so the
Python that plays Lambda's front end does not serialize 64 instances behind one interpreter
lock. Each worker starts its instances, waits until every one asked for its first event, then
on the parent's word feeds them for a warm-up (the first connects: only its errors count) and
the measured window.

Each answer is classified: 2xx (served), 503 with Retry-After (refused, the reader may retry),
or anything else (a 500, another status, no answer within the time-out, the bootstrap gone):
an error. `run` returns, per N, the counts, aggregate throughput of served answers and their
p50/p99 (event handed over to answer back), and PgBouncer's clients waiting in its queue,
sampled mid-window (SHOW POOLS): the waiting happens in the pooler, not in failed requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts" / "lib"))
from runtime_api import LocalFunction  # noqa: E402

FUNCTIONS_PER_WORKER = 16
# How long one invocation may take before it counts as a hang (sqlx's acquire time-out is 5 s).
INVOCATION_TIMEOUT_S = 10.0


def classify(invocation) -> str:
    if invocation.outcome != "response":
        return invocation.outcome  # timeout, exited, error, init_error
    answer = invocation.json()
    status = answer.get("statusCode")
    if isinstance(status, int) and 200 <= status < 300:
        return "served"
    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    if status == 503 and "retry-after" in headers:
        return "refused"
    return f"status {status}"


# -- the worker (a child process) -----------------------------------------------------------


def worker() -> int:
    spec = json.loads(sys.stdin.readline())
    functions = [LocalFunction(f["name"], f["binary"], spec["env"], log_path=spec["log"],
                               timeout_s=INVOCATION_TIMEOUT_S) for f in spec["functions"]]
    try:
        for function in functions:
            function.start()
        deadline = time.monotonic() + 30
        while any(f.api.first_next_at is None for f in functions):
            if time.monotonic() > deadline or not all(f.alive() for f in functions):
                print(json.dumps({"error": "an instance did not start"}), flush=True)
                return 1
            time.sleep(0.01)
        print("ready", flush=True)
        warm_up, window = (float(x) for x in sys.stdin.readline().split())
        start = time.monotonic()
        measure_from, stop_at = start + warm_up, start + warm_up + window
        latencies: list[float] = []
        counts: dict[str, int] = {}
        samples: dict[str, str] = {}
        lock = threading.Lock()

        def feed(function: LocalFunction, event: bytes) -> None:
            while time.monotonic() < stop_at:
                invocation = function.invoke(event)
                kind = classify(invocation)
                # Throughput and latency within the window; an error at any time.
                if invocation.queued_at < measure_from and kind in ("served", "refused"):
                    continue
                with lock:
                    counts[kind] = counts.get(kind, 0) + 1
                    if kind == "served":
                        latencies.append((invocation.finished_at - invocation.queued_at) * 1000.0)
                    elif kind not in samples:
                        samples[kind] = invocation.body[:300].decode("utf-8", "replace")

        threads = [threading.Thread(target=feed, args=(function, f["event"].encode()))
                   for function, f in zip(functions, spec["functions"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps({"counts": counts, "latencies": latencies, "samples": samples}), flush=True)
        return 0
    finally:
        for function in functions:
            function.stop()


# -- the parent -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5))) - 1]


def pooler_waiting(admin_url: str) -> dict | None:
    """PgBouncer's pools now: clients waiting for a server connection, the longest wait (None
    when the admin console refuses us too, as a full max_client_conn does)."""
    done = subprocess.run(["psql", "-X", "-qA", "-F", "\t", admin_url, "-c", "SHOW POOLS"],
                          capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        return None
    out = done.stdout.splitlines()
    waiting, maxwait_ms = 0, 0.0
    names = out[0].split("\t") if out else []
    for line in out[1:]:
        pool = dict(zip(names, line.split("\t")))
        if pool.get("database") not in (None, "pgbouncer") and "cl_waiting" in pool:
            waiting += int(pool["cl_waiting"])
            maxwait_ms = max(maxwait_ms, int(pool["maxwait"]) * 1000 + int(pool["maxwait_us"]) / 1000)
    return {"cl_waiting": waiting, "maxwait_ms": maxwait_ms}


def run(instances: list[dict], env: dict[str, str], log: Path, admin_url: str,
        warm_up: float, window: float) -> dict:
    """Runs `instances` ({name, binary, event}) at once; see the module's doc."""
    groups = [instances[i:i + FUNCTIONS_PER_WORKER] for i in range(0, len(instances), FUNCTIONS_PER_WORKER)]
    workers = []
    try:
        for group in groups:
            w = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            w.stdin.write(json.dumps({"functions": group, "env": env, "log": str(log)}) + "\n")
            w.stdin.flush()
            workers.append(w)
        for w in workers:
            line = w.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"bench: fan-out: a worker did not start its instances: {line.strip()}")
        for w in workers:
            w.stdin.write(f"{warm_up} {window}\n")
            w.stdin.flush()
        time.sleep(warm_up + window / 2)
        pool = pooler_waiting(admin_url)
        counts: dict[str, int] = {}
        latencies: list[float] = []
        samples: dict[str, str] = {}
        for w in workers:
            result = json.loads(w.stdout.readline())
            for kind, n in result["counts"].items():
                counts[kind] = counts.get(kind, 0) + n
            latencies += result["latencies"]
            for kind, sample in result["samples"].items():
                samples.setdefault(kind, sample)
            w.wait(30)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    served = counts.get("served", 0)
    return {
        "instances": len(instances),
        "counts": counts,
        "errors": sum(n for kind, n in counts.items() if kind not in ("served", "refused")),
        "samples": samples,
        "rps": served / window,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "pooler": pool,
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(worker())
    sys.exit("fanout.py is run by bench/bench.py (bench/run)")
