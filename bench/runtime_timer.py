#!/usr/bin/env python3
"""Cold and warm timings of a Lambda bootstrap behind a local Runtime API.

Built on scripts/lib/runtime_api.py (the same Runtime API scripts/sam-check runs the deploy
artifact with). Each of `runs` cold starts spawns the bootstrap and hands it the event at once:

    init    spawn -> its first GET /invocation/next (the runtime is ready)
    first   spawn -> the first response posted (the cold request, lazy connects included)

The first run then serves `warm` more invocations of the same event, each timed from handing
the event over to the response (p50, p99), and reads the process's peak RSS (VmHWM) before it
is stopped. Every answer must be a response with the expected HTTP status (and, if given, a
body containing the marker), or the measurement fails: a broken bootstrap cannot pass for a
fast one.

    runtime_timer.py BOOTSTRAP EVENT.json [--runs 10] [--warm 200] [--env K=V ...]
                     [--sub TEXT=VALUE ...] [--status 200] [--marker TEXT] [--log FILE]

prints one JSON object (times in ms, memory in MiB, size in bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "lib"))
from runtime_api import Invocation, LocalFunction  # noqa: E402


class BadAnswer(Exception):
    """The bootstrap did not answer as expected."""


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0-100) of `values`."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def check(invocation: Invocation, status: int | None, marker: str | None) -> None:
    if invocation.outcome != "response":
        raise BadAnswer(f"{invocation.outcome}: {invocation.body[:300]!r}")
    if status is None and marker is None:
        return
    answer = invocation.json()
    if status is not None and answer.get("statusCode") != status:
        raise BadAnswer(f"status {answer.get('statusCode')} instead of {status}: {str(answer)[:300]}")
    if marker is not None and marker not in str(answer.get("body", "")):
        raise BadAnswer(f"no {marker!r} in the body: {str(answer.get('body'))[:300]}")


def measure(
    bootstrap: str,
    event: bytes,
    env: dict[str, str],
    runs: int = 10,
    warm: int = 200,
    status: int | None = 200,
    marker: str | None = None,
    log: str | None = None,
    name: str = "bench",
) -> dict:
    """Cold starts and warm invocations of `bootstrap` on `event`; see the module's doc."""
    inits, firsts, warm_ms, peak_rss_kib = [], [], [], None
    for run in range(runs):
        function = LocalFunction(name, bootstrap, env, log_path=log, timeout_s=30.0)
        try:
            function.start()
            cold = function.invoke(event)
            check(cold, status, marker)
            if function.init_ms is None:
                raise BadAnswer("answered without asking for an event")
            inits.append(function.init_ms)
            firsts.append((cold.finished_at - function.spawned_at) * 1000.0)
            if run == 0:
                for _ in range(warm):
                    invocation = function.invoke(event)
                    check(invocation, status, marker)
                    warm_ms.append((invocation.finished_at - invocation.delivered_at) * 1000.0)
                peak_rss_kib = function.peak_rss_kib()
        finally:
            function.stop()
        # Let the previous process's exit and socket teardown settle before the next spawn.
        time.sleep(0.05)
    return {
        "bootstrap": bootstrap,
        "size_bytes": os.path.getsize(bootstrap),
        "runs": runs,
        "init_ms": statistics.median(inits),
        "first_ms": statistics.median(firsts),
        "warm": len(warm_ms),
        "warm_p50_ms": percentile(warm_ms, 50) if warm_ms else None,
        "warm_p99_ms": percentile(warm_ms, 99) if warm_ms else None,
        "peak_rss_mib": peak_rss_kib / 1024 if peak_rss_kib else None,
    }


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("event", help="an event JSON file")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--sub", action="append", default=[], metavar="TEXT=VALUE",
                        help="replace TEXT in the event by VALUE (tokens, ids)")
    parser.add_argument("--status", type=int, default=200, help="the expected statusCode; 0: any response")
    parser.add_argument("--marker", help="text every response body must contain")
    parser.add_argument("--log", help="append the bootstrap's output to this file")
    parser.add_argument("--name", default="bench")
    args = parser.parse_args()
    event = Path(args.event).read_text()
    for item in args.sub:
        text, value = item.split("=", 1)
        event = event.replace(text, value)
    env = dict(item.split("=", 1) for item in args.env)
    try:
        result = measure(args.bootstrap, event.encode(), env, args.runs, args.warm,
                         args.status or None, args.marker, args.log, args.name)
    except BadAnswer as e:
        print(f"runtime_timer: {args.bootstrap}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
