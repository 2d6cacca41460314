#!/usr/bin/env python3
"""The fan-out bench: N function bootstraps at once, each behind its own local Runtime API and
fed one event after another (as Lambda feeds an instance), all on one PgBouncer in transaction
mode with a server pool smaller than the instances' connections (production: many instances,
each a process with a pool of one or two, through Neon's pooler).

The instances take the four functions' read routes in turn (`me`, the profile, the
conversation list, a personalized chapter that is a cache hit); N = 1 is `me` alone. The
driver is `bench-fanout` (bench/fanout/, built beside the functions' binaries): the Runtime
APIs and the feeding in Rust on one thread, so the driver takes a small share of the CPU the
instances and the pooler run on (the Python one took several times the functions' own). It
starts the instances, says `ready` once every one asked for its first event, then on our `go`
feeds them for a warm-up (the first connects: only its errors count) and the measured window.

Each answer is classified: 2xx (served), 503 with Retry-After (refused, the reader may retry),
or anything else (another status, the error route, no answer within the time-out, the
bootstrap gone): an error. `run` returns, per N, the counts, aggregate throughput of served
answers and their p50/p99 (event handed over to answer back), and PgBouncer's clients waiting
in its queue, sampled mid-window (SHOW POOLS): the waiting happens in the pooler, not in
failed requests.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

# How long one invocation may take before it counts as a hang (sqlx's acquire time-out is 5 s).
INVOCATION_TIMEOUT_S = 10.0


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
    driver = Path(instances[0]["binary"]).parent / "bench-fanout"
    spec = {"instances": instances, "env": env, "log": str(log), "warm_up_s": warm_up,
            "window_s": window, "timeout_s": INVOCATION_TIMEOUT_S}
    with subprocess.Popen([str(driver)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as fed:
        try:
            fed.stdin.write(json.dumps(spec) + "\n")
            fed.stdin.flush()
            line = fed.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"bench: fan-out: the instances did not start: {line.strip()}")
            fed.stdin.write("go\n")
            fed.stdin.flush()
            time.sleep(warm_up + window / 2)
            pool = pooler_waiting(admin_url)
            line = fed.stdout.readline()
            if not line:
                raise SystemExit(f"bench: fan-out: {driver.name} gave no result (status {fed.wait()})")
            result = json.loads(line)
            fed.wait(30)
        finally:
            if fed.poll() is None:
                fed.kill()
    return {**result, "pooler": pool}


if __name__ == "__main__":
    raise SystemExit("fanout.py is run by bench/bench.py (bench/run)")
