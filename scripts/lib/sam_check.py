#!/usr/bin/env python3
"""Drives every bootstrap that `sam build` made through the sample events (scripts/sam-check).

Each function's `.aws-sam/build/<LogicalId>/bootstrap` runs behind a local Lambda Runtime API
(runtime_api.py), one process per function kept warm across its events, as Lambda would. The
events come from events/, with their REPLACE_WITH_* placeholders filled from earlier answers:
a new user registers, and its access token, conversation id, ... feed the later events.

The whole run happens once per log level of --log-levels (DEBUG and WARN by default), with
JSON logs as Lambda asks for them (AWS_LAMBDA_LOG_FORMAT=JSON, AWS_LAMBDA_LOG_LEVEL), and then
every line each bootstrap wrote is read: each must be one flat JSON object with `timestamp`
(RFC 3339), `level` (none below the run's), `message`; a line's `requestId` must be one of its
function's invocations, every line of primer's own code carries one (and, for an HTTP
function, an `apiRequestId`), and at DEBUG every invocation has lines with its `requestId` and
the event's `apiRequestId`; no line may hold the JWT secret, a password sent or a token issued
or e-mailed.

Prints one row per event (function, event, expected and received status, time) and closes
with "sam-check: N passed, M failed". Exits 1 if any event got another status or no answer, a
bootstrap reported an init error, a bootstrap exited before it was stopped, or a log line
breaks the rules above.

    sam_check.py --build-dir .aws-sam/build --events events --logs DIR --env K=V ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_api import Invocation, LocalFunction  # noqa: E402

# `expected` is an HTTP status, or None for a non-HTTP function (any successful answer).
# `take` reads values for later events' placeholders from the decoded response body;
# `mailed` names the kind of e-mail the event sends, whose link's token (read from the newest
# such file in the outbox folder) becomes the value `mailed_as` for later events.


@dataclass
class Step:
    function: str
    event: str
    expected: int | None
    take: Callable[[dict], dict[str, str]] | None = None
    edit: Callable[[dict, dict[str, str]], None] | None = None
    mailed: str | None = None
    mailed_as: str | None = None
    # Text the answer's body must contain (a streamed answer is not JSON).
    contains: str | None = None


def _mailed_token(outbox: Path, kind: str) -> str:
    """The `token` of the link in the newest `.eml` of `kind` in the outbox folder."""
    import email
    from email import policy

    files = sorted(outbox.glob(f"*-{kind}-*.eml"))
    if not files:
        raise KeyError(f"no {kind} e-mail in {outbox}")
    message = email.message_from_bytes(files[-1].read_bytes(), policy=policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"[?&]token=([A-Za-z0-9._-]+)", text)
    if not match:
        raise KeyError(f"no link with a token in {files[-1]}")
    return match.group(1)


def _unique_email(event: dict, values: dict[str, str]) -> None:
    """The sample's fixed email would collide with an earlier run's user: use this run's."""
    body = json.loads(event["body"])
    body["email"] = values["EMAIL"]
    event["body"] = json.dumps(body)


def _session(body: dict) -> dict[str, str]:
    session = body.get("session", body)
    return {
        "ACCESS_TOKEN": session["access_token"],
        "REFRESH_TOKEN": session["refresh_token"],
        "SESSION_ID": session["session_id"],
    }


STEPS = [
    Step("AuthFunction", "auth-register.json", 201, take=_session, edit=_unique_email),
    Step("AuthFunction", "auth-me-get.json", 200),
    Step("AuthFunction", "auth-login.json", 200, edit=_unique_email),
    Step("AuthFunction", "auth-sessions-list.json", 200),
    Step("AuthFunction", "auth-guest.json", 201),
    # Account recovery through the outbox (no SES here): a verification link asked for and
    # used, then a forgotten password reset. The reset ends every session and answers with a
    # new one, which the later events use.
    Step("AuthFunction", "auth-email-verify-send.json", 202, mailed="verify-email", mailed_as="VERIFY_TOKEN"),
    Step("AuthFunction", "auth-email-verify.json", 204),
    Step(
        "AuthFunction",
        "auth-password-forgot.json",
        202,
        edit=_unique_email,
        mailed="password-reset",
        mailed_as="RESET_TOKEN",
    ),
    Step("AuthFunction", "auth-password-reset.json", 200, take=_session),
    # Sign-in providers: GitHub is configured with its endpoints on a closed local port, so the
    # start and the link answer (nothing calls GitHub before a callback), a callback with an
    # unknown state returns to the site, and an unknown one-time code is refused.
    Step("AuthFunction", "auth-oauth-providers.json", 200, contains='"github"'),
    Step("AuthFunction", "auth-oauth-start.json", 302),
    Step("AuthFunction", "auth-oauth-callback.json", 302),
    Step("AuthFunction", "auth-oauth-link.json", 200, contains="/login/oauth/authorize?"),
    Step("AuthFunction", "auth-oauth-exchange.json", 400, contains="invalid_code"),
    Step("AuthFunction", "auth-accounts-list.json", 200, contains='"credential"'),
    Step("AuthFunction", "auth-accounts-delete.json", 404),
    Step("ProfileFunction", "profile-options.json", 200),
    Step("ProfileFunction", "profile-put.json", 201),
    Step("ProfileFunction", "profile-get.json", 200),
    Step("ProfileFunction", "profile-patch.json", 200),
    Step("ChaptersFunction", "chapters-list.json", 200),
    Step("ChaptersFunction", "chapters-get.json", 200),
    # After profile-put: the personalized chapter needs an onboarded profile.
    Step("ChaptersFunction", "chapters-personalized.json", 200),
    Step("ChaptersFunction", "chapters-openapi.json", 200),
    Step("ConversationsFunction", "models-list.json", 200),
    Step(
        "ConversationsFunction",
        "conversations-create.json",
        201,
        take=lambda b: {"CONVERSATION_ID": b["conversation"]["id"]},
    ),
    Step(
        "ConversationsFunction",
        "conversations-messages-post.json",
        201,
        take=lambda b: {"MESSAGE_ID": b["user_message"]["id"]},
    ),
    # The streaming function, through its function URL's event: the same question within 30 s,
    # so the stored exchange is replayed as Server-Sent Events, ending with `done`.
    Step(
        "ConversationsStreamFunction",
        "conversations-stream-messages-post.json",
        201,
        contains="event: done",
    ),
    Step("ConversationsFunction", "conversations-get.json", 200),
    Step("ConversationsFunction", "conversations-messages-list.json", 200),
    Step("ConversationsFunction", "conversations-list.json", 200),
    Step("JanitorFunction", "janitor-schedule.json", None),
]

PLACEHOLDER = re.compile(r"REPLACE_WITH_([A-Z_]+)")


def _fill(text: str, values: dict[str, str]) -> tuple[str, list[str]]:
    missing: list[str] = []

    def sub(match: re.Match) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        missing.append(match.group(0))
        return match.group(0)

    return PLACEHOLDER.sub(sub, text), missing


def _check(step: Step, result: Invocation) -> tuple[bool, str, dict | None, str]:
    """(passed, status shown, decoded body or None, note)."""
    if result.outcome != "response":
        detail = result.body.decode("utf-8", "replace")[:300]
        if result.error_type:
            detail = f"{result.error_type}: {detail}"
        return False, result.outcome or "?", None, detail
    try:
        answer = result.json()
    except (ValueError, UnicodeDecodeError) as e:
        return False, "bad-json", None, f"the answer is not JSON: {e}"
    if step.expected is None:
        return True, "ok", answer if isinstance(answer, dict) else None, ""
    if not isinstance(answer, dict) or "statusCode" not in answer:
        return False, "no-status", None, f"not an API Gateway response: {str(answer)[:200]}"
    status = answer["statusCode"]
    body_text = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        import base64

        body_text = base64.b64decode(body_text).decode("utf-8", "replace")
    try:
        body = json.loads(body_text) if body_text else {}
    except ValueError:
        body = None
    passed = status == step.expected and (step.contains is None or step.contains in body_text)
    note = "" if passed else body_text[:300]
    return passed, str(status), body if isinstance(body, dict) else None, note


LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
# The crates of primer's own code: every line they log while serving carries the request ids.
OWN_CODE = {"primer_shared", "auth", "profile", "chapters", "conversations", "conversations_stream", "janitor"}


def _check_log(
    function: str, path: Path, level: str, invocations: dict[str, str | None], secrets: dict[str, str]
) -> tuple[int, list[str]]:
    """Reads every line `function` logged in a run at `level`: (lines read, problems).

    `invocations` maps each Lambda request id handed to the function to the API request id of
    its event (None for a non-HTTP event)."""
    problems: list[str] = []
    text = path.read_text(errors="replace") if path.is_file() else ""
    seen: dict[str, set[str]] = {request_id: set() for request_id in invocations}
    http = any(api_request_id is not None for api_request_id in invocations.values())
    lines = text.splitlines()
    for number, raw in enumerate(lines, 1):
        where = f"{path.name}:{number}"
        try:
            line = json.loads(raw)
        except ValueError:
            problems.append(f"{where}: not JSON: {raw[:200]}")
            continue
        if not isinstance(line, dict):
            problems.append(f"{where}: not a JSON object: {raw[:200]}")
            continue
        try:
            datetime.datetime.fromisoformat(str(line.get("timestamp")))
        except ValueError:
            problems.append(f"{where}: no RFC 3339 timestamp: {raw[:200]}")
        if line.get("level") not in LEVELS:
            problems.append(f"{where}: no level: {raw[:200]}")
        elif LEVELS.index(line["level"]) < LEVELS.index(level):
            problems.append(f"{where}: {line['level']} below the run's {level}: {raw[:200]}")
        if not isinstance(line.get("message"), str) or not line["message"]:
            problems.append(f"{where}: no message: {raw[:200]}")
        for key in ("fields", "span"):
            if key in line:
                problems.append(f"{where}: nested `{key}` (lines are flat): {raw[:200]}")
        own = str(line.get("target", "")).split("::")[0] in OWN_CODE
        if own and "requestId" not in line:
            problems.append(f"{where}: a line of primer's code without requestId: {raw[:200]}")
        if own and http and "apiRequestId" not in line:
            problems.append(f"{where}: a line of primer's code without apiRequestId: {raw[:200]}")
        request_id = line.get("requestId")
        if request_id is not None:
            if request_id not in invocations:
                problems.append(f"{where}: requestId {request_id!r} is no invocation's: {raw[:200]}")
            else:
                seen[request_id].add(str(line.get("apiRequestId")))
        for what, secret in secrets.items():
            if secret and secret in raw:
                problems.append(f"{where}: {what} is in the log")
    if level == "DEBUG":
        for request_id, api_request_id in invocations.items():
            if not seen[request_id]:
                problems.append(f"{path.name}: no line with requestId {request_id}")
            elif api_request_id is not None and api_request_id not in seen[request_id]:
                problems.append(f"{path.name}: no line of {request_id} with apiRequestId {api_request_id}")
    return len(lines), problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=".aws-sam/build")
    parser.add_argument("--events", default="events")
    parser.add_argument("--logs", required=True, help="folder for each bootstrap's log")
    parser.add_argument("--outbox", required=True, help="the functions' e-mail outbox (PRIMER_OUTBOX_DIR)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per invocation")
    parser.add_argument("--log-levels", default="DEBUG,WARN", help="one whole run per level, comma-separated")
    args = parser.parse_args()

    build, events, logs = Path(args.build_dir), Path(args.events), Path(args.logs)
    passed = failed = 0
    for level in args.log_levels.split(","):
        env = dict(item.split("=", 1) for item in args.env)
        env.update({"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": level})
        print(f"\n{level}: every event, JSON logs at AWS_LAMBDA_LOG_LEVEL={level}")
        ok, bad = _run(args, env, level, build, events, logs / level.lower())
        passed, failed = passed + ok, failed + bad
    print(f"sam-check: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def _run(args, env: dict[str, str], level: str, build: Path, events: Path, logs: Path) -> tuple[int, int]:
    """Every step once, at `level`, then every log line read: (passed, failed)."""
    values = {
        "EMAIL": f"sam-check-{uuid.uuid4().hex[:12]}@example.com",
        # No provider is reached here: a callback's code and state, and a one-time code, that
        # name nothing.
        "PROVIDER_CODE": "sam-check-code",
        "STATE": "sam-check-unknown-state",
        "SIGN_IN_CODE": "sam-check-unknown-code",
    }
    # Lambda request id -> the event's API request id, per function.
    invoked: dict[str, dict[str, str | None]] = {}
    passwords: list[str] = []
    functions: dict[str, LocalFunction] = {}
    broken: dict[str, str] = {}  # function -> why it cannot run
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    passed = failed = 0

    def fail_note(function: str, event: str, note: str) -> None:
        notes.append(f"  {function} {event}: {note}")

    try:
        for step in STEPS:
            expected = str(step.expected) if step.expected is not None else "ok"
            if step.function in broken:
                rows.append((step.function, step.event, expected, "skipped", "", "", "FAIL"))
                fail_note(step.function, step.event, broken[step.function])
                failed += 1
                continue
            text = (events / step.event).read_text()
            if step.edit:
                data = json.loads(text)
                step.edit(data, values)
                text = json.dumps(data)
            text, missing = _fill(text, values)
            if missing:
                rows.append((step.function, step.event, expected, "no-input", "", "", "FAIL"))
                fail_note(step.function, step.event, f"no value for {', '.join(sorted(set(missing)))}")
                failed += 1
                continue

            fn = functions.get(step.function)
            start = "warm"
            if fn is None:
                bootstrap = build / step.function / "bootstrap"
                if not bootstrap.is_file():
                    broken[step.function] = f"{bootstrap} is missing"
                    rows.append((step.function, step.event, expected, "missing", "", "", "FAIL"))
                    fail_note(step.function, step.event, broken[step.function])
                    failed += 1
                    continue
                fn = LocalFunction(
                    step.function,
                    bootstrap,
                    env,
                    log_path=logs / f"{step.function}.log",
                    timeout_s=args.timeout,
                )
                fn.start()
                functions[step.function] = fn
                start = "cold"

            result = fn.invoke(text)
            sent = json.loads(text)
            context = sent.get("requestContext") if isinstance(sent, dict) else None
            api_request_id = context.get("requestId") if isinstance(context, dict) else None
            invoked.setdefault(step.function, {})[result.request_id] = api_request_id
            try:
                body_sent = json.loads(sent.get("body") or "{}") if isinstance(sent, dict) else {}
            except (ValueError, TypeError):
                body_sent = {}
            if isinstance(body_sent, dict):
                passwords += [v for k, v in body_sent.items() if "password" in k and isinstance(v, str)]
            ok, got, body, note = _check(step, result)
            if result.outcome in ("init_error", "exited", "timeout"):
                broken[step.function] = f"bootstrap unusable after {step.event}: {result.outcome}"
            if ok and step.take and body is not None:
                try:
                    values.update(step.take(body))
                except (KeyError, TypeError) as e:
                    ok, note = False, f"the answer lacks {e}: {json.dumps(body)[:200]}"
            if ok and step.mailed and step.mailed_as:
                try:
                    values[step.mailed_as] = _mailed_token(Path(args.outbox), step.mailed)
                except KeyError as e:
                    ok, note = False, str(e)
            rows.append(
                (step.function, step.event, expected, got, f"{result.elapsed_ms:.0f}", start, "ok" if ok else "FAIL")
            )
            if ok:
                passed += 1
            else:
                failed += 1
                fail_note(step.function, step.event, note)
    finally:
        # Every bootstrap must still be serving: one that exited (a panic, a crash) fails.
        for name, fn in functions.items():
            if name not in broken and not fn.alive():
                failed += 1
                fail_note(name, "-", f"the bootstrap exited (status {fn.process.returncode})")
            fn.stop()

    header = ("function", "event", "expected", "got", "ms", "start", "result")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(  # noqa: E731
        c.rjust(w) if i in (2, 3, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
    ).rstrip()
    # Every line each bootstrap wrote, read: one check per function.
    secrets = {"the JWT secret": env.get("JWT_SECRET", "")}
    secrets.update({f"the {key.lower()}": value for key, value in values.items() if key.endswith("TOKEN")})
    secrets.update({f"password {i + 1}": p for i, p in enumerate(passwords)})
    log_rows = []
    for name in sorted(invoked):
        read, problems = _check_log(name, logs / f"{name}.log", level, invoked[name], secrets)
        log_rows.append(f"  {name}: {read} lines, {len(problems)} problems")
        if problems:
            failed += 1
            notes.extend(f"  {name} log: {problem}" for problem in problems[:20])
        else:
            passed += 1

    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for r in rows:
        print(line(r))
    print("logs (AWS_LAMBDA_LOG_LEVEL=%s):" % level)
    print("\n".join(log_rows))
    if notes:
        print("\nfailures (bootstrap logs in %s):" % logs)
        print("\n".join(notes))
    # A function the template builds but no step runs would go unchecked: that fails too.
    for unrun in sorted({p.parent.name for p in build.glob("*/bootstrap")} - {s.function for s in STEPS}):
        failed += 1
        print(f"  {unrun}: built, but no event runs it")
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
