#!/usr/bin/env python3
"""Runs the test binaries `cargo test --no-run --message-format=json` built, several at once.

`cargo test` runs its test binaries one after another, and most of their time is spent waiting
(on PostgreSQL, on a stub's delay, on a lease running out), so on two cores the run is shorter
with a few binaries side by side. Each binary runs as cargo would run it (from its package's
folder, with CARGO_MANIFEST_DIR set) and its output is printed whole when it
ends, so binaries never interleave. The longest binaries of the last run start first
(durations kept in DURATIONS, a JSON file beside the build output).

usage: run_tests.py BUILD_JSON LOG DURATIONS [JOBS]
Exits 1 if any binary fails (every binary runs: a failure stops nothing); a binary still running
after PRIMER_TEST_BINARY_TIMEOUT seconds (1200) is killed and fails.
"""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


# The longest one test binary may run (the longest takes about two minutes here).
BINARY_TIMEOUT = int(os.environ.get("PRIMER_TEST_BINARY_TIMEOUT", "1200"))


def binaries(build_json):
    """(name, executable, package folder) of every test binary built."""
    found = []
    with open(build_json) as lines:
        for line in lines:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if message.get("reason") != "compiler-artifact" or not message.get("executable"):
                continue
            if not message["profile"]["test"]:
                continue
            folder = os.path.dirname(message["manifest_path"])
            package = os.path.basename(folder)
            target = message["target"]
            kind = "unittests" if target["kind"] != ["test"] else "tests"
            name = f"{package}: {kind} {target['name']}"
            found.append((name, message["executable"], folder))
    return found


def main():
    build_json, log_path, durations_path = sys.argv[1:4]
    jobs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    try:
        with open(durations_path) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {}
    todo = binaries(build_json)
    if not todo:
        print("no test binary in the build output", file=sys.stderr)
        return 1
    # Unknown ones first (they may be long), then the longest of the last run.
    todo.sort(key=lambda b: -last.get(b[0], float("inf")))

    lock = threading.Lock()
    took, failed = {}, []
    log = open(log_path, "w")

    def run(binary):
        name, executable, folder = binary
        env = dict(os.environ, CARGO_MANIFEST_DIR=folder)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [executable], cwd=folder, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, timeout=BINARY_TIMEOUT,
            )
            code, raw = done.returncode, done.stdout
        except subprocess.TimeoutExpired as stopped:
            # A test that never ends must not hold the run: its binary is killed and fails.
            code, raw = f"killed after {BINARY_TIMEOUT} s", stopped.output or b""
        seconds = time.monotonic() - started
        output = raw.decode("utf-8", "replace")
        with lock:
            took[name] = round(seconds, 1)
            if code != 0:
                failed.append(name)
            header = f"\n     Ran {name} ({executable}) in {seconds:.1f} s, exit {code}\n"
            sys.stdout.write(header + output)
            sys.stdout.flush()
            log.write(header + output)
            log.flush()

    print(f"running {len(todo)} test binaries, {jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run, todo))
    log.close()
    try:
        with open(durations_path, "w") as f:
            json.dump(took, f, indent=1, sort_keys=True)
    except OSError:
        pass
    print("\ntest binaries by time: " + ", ".join(f"{n} {s} s" for n, s in sorted(took.items(), key=lambda t: -t[1])))
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
