#!/usr/bin/env python3
"""Drives every bootstrap that `sam build` made through the sample events (scripts/sam-check).

Each function's `.aws-sam/build/<LogicalId>/bootstrap` runs behind a local Lambda Runtime API
(runtime_api.py), one process per function kept warm across its events, as Lambda would. The
events come from events/, with their REPLACE_WITH_* placeholders filled from earlier answers:
a new user registers, and its access token, conversation id, ... feed the later events.

Prints one row per event (function, event, expected and received status, time) and closes
with "sam-check: N passed, M failed". Exits 1 if any event got another status or no answer, a
bootstrap reported an init error, or a bootstrap exited before it was stopped.

    sam_check.py --build-dir .aws-sam/build --events events --logs DIR --env K=V ...
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=".aws-sam/build")
    parser.add_argument("--events", default="events")
    parser.add_argument("--logs", required=True, help="folder for each bootstrap's log")
    parser.add_argument("--outbox", required=True, help="the functions' e-mail outbox (PRIMER_OUTBOX_DIR)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per invocation")
    args = parser.parse_args()

    env = dict(item.split("=", 1) for item in args.env)
    build, events, logs = Path(args.build_dir), Path(args.events), Path(args.logs)
    values = {
        "EMAIL": f"sam-check-{uuid.uuid4().hex[:12]}@example.com",
        # No provider is reached here: a callback's code and state, and a one-time code, that
        # name nothing.
        "PROVIDER_CODE": "sam-check-code",
        "STATE": "sam-check-unknown-state",
        "SIGN_IN_CODE": "sam-check-unknown-code",
    }
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
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for r in rows:
        print(line(r))
    if notes:
        print("\nfailures (bootstrap logs in %s):" % logs)
        print("\n".join(notes))
    # A function the template builds but no step runs would go unchecked: that fails too.
    for unrun in sorted({p.parent.name for p in build.glob("*/bootstrap")} - {s.function for s in STEPS}):
        failed += 1
        print(f"  {unrun}: built, but no event runs it")
    print(f"sam-check: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
