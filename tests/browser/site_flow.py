#!/usr/bin/env python3
"""The example site (examples/web) in a real browser, on another origin than the API.

Debian's Chromium, driven by Playwright (never a browser of Playwright's own), loads the example
page from a second loopback port and goes through a reader's whole journey against the local
runner: sign-up, the e-mailed verification link (the runner's own page), onboarding, a
personalized chapter, a refresh after a 401, a tutor reply streamed in pieces, the daily quota's
429 with its Retry-After, sign-out, a password reset, and a sign-in with an OpenID Connect
provider (npm oidc-provider, its login and consent pages filled in by the browser) through the
page's "Sign in with ..." link, and one the reader declines there. It checks that the page reads the
headers the API exposes, that a page on an origin the API does not list gets no answer, and that a
Better-Auth session cookie (set by a real Better-Auth server on a third port) reaches primer with
`credentials: "include"`. The model is a local stub that streams its answer in timed pieces.

scripts/browser-test prepares the database and the tools, then runs this with:
    PRIMER_RUNNER            the local runner binary
    RUNNER_DATABASE_URL      its database (through PgBouncer), migrated, with the book
    BETTER_AUTH_DATABASE_URL the same database, direct, for Better-Auth
    PRIMER_BETTER_AUTH_DIR   tests/better-auth, with node_modules installed
    PRIMER_OIDC_PROVIDER_DIR tests/oidc-provider, with node_modules installed
    PRIMER_BROWSER_REPORT    a folder for logs and screenshots of failures
    PRIMER_CHROMIUM          the browser (default /usr/bin/chromium)
Prints one line per step and closes with "browser: N passed, M failed"; exits 1 on any failure.
"""

import functools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "examples" / "web"
REPORT = Path(os.environ.get("PRIMER_BROWSER_REPORT", REPO / ".local" / "browser-report"))
SECRET = "better-auth-secret-of-the-browser-test-0123456789"
PASSWORD = "correct horse battery staple"
# The stub model's answer: this many pieces, this far apart, so the reader can see them come.
PIECES = 6
GAP = 0.08
# The daily message quota of a user in this run: the third question is refused.
QUOTA = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelStub(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions endpoint: streamed answers come in timed pieces."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if not request.get("stream"):
            # Personalization: an answer without the chapter's headings, so the rule-based chapter
            # is served (the model is not what this test is about).
            body = json.dumps({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "stub"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def event(payload):
            data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for n in range(PIECES):
            time.sleep(GAP)
            event({"choices": [{"index": 0, "delta": {"content": f"Piece {n + 1} of the answer. "}}]})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        event({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": PIECES, "total_tokens": 20 + PIECES}})
        event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(handler, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def http(method: str, url: str, body=None, headers=None):
    """(status, headers, parsed body or None) of one request from this script, not the browser."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


def wait_until(check, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Flow:
    def __init__(self):
        self.api_port, self.site_port, self.foreign_port, model_port = (free_port() for _ in range(4))
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.site = f"http://127.0.0.1:{self.site_port}"
        self.foreign = f"http://127.0.0.1:{self.foreign_port}"
        self.servers = [
            serve(ModelStub, model_port),
            serve(functools.partial(QuietFiles, directory=str(WEB)), self.site_port),
            serve(functools.partial(QuietFiles, directory=str(WEB)), self.foreign_port),
        ]
        self.processes = []
        REPORT.mkdir(parents=True, exist_ok=True)
        self.runner_log = REPORT / "runner.log"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MODEL_", "PRIMER_BUCKET", "FRONTEND_URL", "EMAIL_", "QUOTA_", "PRIMER_CORS"))
        }
        env.update({
            "DATABASE_URL": os.environ["RUNNER_DATABASE_URL"],
            "PORT": str(self.api_port),
            "JWT_SECRET": "browser-test-secret-not-for-production-0123456789",
            "BETTER_AUTH_SECRET": SECRET,
            # The site's origin only: a listed origin, so cookies may come along.
            "PRIMER_CORS_ORIGINS": self.site,
            "MODEL_API_KEY": "sk-stub",
            "MODEL_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
            "MODEL_NAME": "stub-model",
            "QUOTA_USER_MESSAGES_PER_DAY": str(QUOTA),
            "PASSWORD_FORGOT_MIN_MS": "10",
            "PRIMER_OUTBOX_DIR": str(REPORT / "outbox"),
            "PRIMER_BLOB_DIR": str(REPORT / "blobs"),
            "PRIMER_LOG_FORMAT": "json",
            "RUST_LOG": "info",
        })
        # A real OpenID provider, its client registered with the runner's callback.
        self.oidc_account = f"school-{os.getpid()}"
        self.oidc_email = f"{self.oidc_account}@school.example"
        oidc_config = {
            "clients": [{
                "client_id": "example-site",
                "client_secret": "example-site-secret",
                "redirect_uris": [f"{self.api}/api/auth/oauth/school/callback"],
            }],
            "accounts": {self.oidc_account: {"email": self.oidc_email, "email_verified": True, "name": "Grace"}},
        }
        oidc = subprocess.Popen(
            ["node", "server.mjs", json.dumps(oidc_config)],
            cwd=os.environ["PRIMER_OIDC_PROVIDER_DIR"],
            stdin=subprocess.PIPE,  # it exits when this closes
            stdout=subprocess.PIPE,
            stderr=open(REPORT / "oidc-provider.log", "w"),
            text=True,
        )
        self.processes.append(oidc)
        issuer = json.loads(oidc.stdout.readline() or "{}").get("issuer")
        if not issuer:
            raise RuntimeError(f"the OpenID provider did not start: {(REPORT / 'oidc-provider.log').read_text()}")
        env.update({
            "OIDC_PROVIDERS": "school",
            "OIDC_SCHOOL_NAME": "School",
            "OIDC_SCHOOL_ISSUER": issuer,
            "OIDC_SCHOOL_CLIENT_ID": "example-site",
            "OIDC_SCHOOL_CLIENT_SECRET": "example-site-secret",
            # Sign-ins return to the site's pages.
            "SITE_ORIGINS": self.site,
        })
        log = open(self.runner_log, "w")
        self.processes.append(subprocess.Popen([os.environ["PRIMER_RUNNER"]], env=env, stdout=log, stderr=subprocess.STDOUT))
        better_auth = subprocess.Popen(
            ["node", "site-server.mjs"],
            cwd=os.environ["PRIMER_BETTER_AUTH_DIR"],
            env={**os.environ, "DATABASE_URL": os.environ["BETTER_AUTH_DATABASE_URL"], "BETTER_AUTH_SECRET": SECRET, "SITE_ORIGIN": self.site},
            stdout=subprocess.PIPE,
            stderr=open(REPORT / "better-auth.log", "w"),
            text=True,
        )
        self.processes.append(better_auth)
        self.auth = json.loads(better_auth.stdout.readline() or "{}").get("url")
        if not self.auth:
            raise RuntimeError(f"the Better-Auth server did not start: {(REPORT / 'better-auth.log').read_text()}")
        wait_until(lambda: self.answers(f"{self.api}/api/chapters"), "the local runner", 60)
        self.email = f"reader-{os.getpid()}-{int(time.time())}@example.com"
        self.password = PASSWORD
        self.responses = []

    @staticmethod
    def answers(url: str) -> bool:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return True
        except OSError:
            return False

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for server in self.servers:
            server.shutdown()

    def logged_link(self, page: str) -> str:
        """The newest link to `page` the runner's outbox logged."""
        def find():
            links = re.findall(r'"link":"([^"]*/' + page + r'\?token=[^"]+)"', self.runner_log.read_text())
            return links[-1] if links else None
        return wait_until(find, f"a logged {page} link", 10)

    # What the page's requests got, as the network saw them (whatever CORS let the page read).

    def record(self, response):
        self.responses.append((response.request.method, response.url, response.status, response.headers))

    def seen(self, method: str, path: str, status: int | None = None):
        return [r for r in self.responses if r[0] == method and r[1].split("?")[0] == self.api + path and status in (None, r[2])]


def run(flow: Flow, browser) -> list[tuple[str, str | None, float]]:
    results = []
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page_errors = []
    context.on("page", lambda p: p.on("pageerror", lambda e: page_errors.append(f"{p.url}: {e}")))
    page = context.new_page()
    page.on("response", flow.record)

    def step(name):
        def run_step(check):
            started = time.monotonic()
            try:
                check()
                results.append((name, None, time.monotonic() - started))
            except Exception as e:  # noqa: BLE001 - every failure is reported, the next step runs
                results.append((name, f"{type(e).__name__}: {e}", time.monotonic() - started))
                traceback.print_exc(file=sys.stderr)
                for n, p in enumerate(context.pages):
                    p.screenshot(path=str(REPORT / f"{name}-{n}.png"), full_page=True)
            return check
        return run_step

    site_page = f"{flow.site}/index.html?api={flow.api}"

    @step("the page on another origin reads the API (CORS)")
    def _():
        page.goto(site_page)
        page.wait_for_selector("#chapters li button")
        assert page.text_content("#whoami") == "Not signed in"
        (method, url, status, headers) = flow.seen("GET", "/api/chapters", 200)[-1]
        assert headers.get("access-control-allow-origin") == flow.site, headers
        assert headers.get("access-control-allow-credentials") == "true", headers

    @step("page JavaScript reads x-request-id; Retry-After is exposed")
    def _():
        read = page.evaluate(
            """async (api) => {
                const r = await fetch(api + "/api/chapters");
                return {id: r.headers.get("x-request-id"), exposed: r.headers.get("access-control-expose-headers")};
            }""",
            flow.api,
        )
        network = flow.seen("GET", "/api/chapters", 200)[-1][3]["x-request-id"]
        assert read["id"] == network, (read, network)
        # What the page may read is what CORS exposes (a header not listed reads as null).
        assert read["exposed"] is None
        assert {"x-request-id", "retry-after"} <= {h.strip() for h in flow.seen("GET", "/api/chapters", 200)[-1][3]["access-control-expose-headers"].split(",")}

    @step("sign up with primer's auth")
    def _():
        page.fill("#sign-up [name=name]", "Ada")
        page.fill("#sign-up [name=email]", flow.email)
        page.fill("#sign-up [name=password]", flow.password)
        page.click("#sign-up button")
        page.wait_for_selector("#whoami[data-state=signed-in]")
        assert flow.email in page.text_content("#whoami")
        assert flow.seen("POST", "/api/auth/register", 201)

    @step("the verification link the runner logged opens its page and verifies")
    def _():
        link = flow.logged_link("verify-email")
        assert link.startswith(f"{flow.api}/verify-email?token="), link
        verify = context.new_page()
        verify.goto(link)
        verify.wait_for_selector("#result:not([data-state=working])")
        assert verify.get_attribute("#result", "data-state") == "done", verify.text_content("#result")
        assert "token" not in verify.url, verify.url
        verify.close()
        token = page.evaluate("() => JSON.parse(localStorage.getItem('primer.session')).access_token")
        status, _, body = http("GET", f"{flow.api}/api/auth/me", headers={"authorization": f"Bearer {token}"})
        assert status == 200 and body["user"]["email_verified"] is True, body

    @step("onboarding form built from /api/profile/options")
    def _():
        page.wait_for_selector("#profile-fields fieldset[data-field=python_proficiency]")
        options = http("GET", f"{flow.api}/api/profile/options")[2]
        shown = page.eval_on_selector_all("#profile-fields fieldset", "sets => sets.map(s => s.dataset.field)")
        assert shown == [f["field"] for f in options["fields"]], shown
        page.select_option("[data-field=python_proficiency] select", "Intermediate")
        page.select_option("[data-field=developer_role] select", "Backend Developer")
        page.check("[data-field='software_context.languages'] input[value=Python]")
        page.check("[data-field=learning_goals] input[value=locomotion]")
        page.click("#profile-form button")
        page.wait_for_selector("#onboarding[data-onboarded=true]")
        assert page.is_disabled("[data-field=python_proficiency] select")

    @step("a personalized chapter")
    def _():
        page.click("[data-chapter='1']")
        page.wait_for_selector("#chapter[data-chapter='1']")
        assert "written for your profile" in page.text_content("#chapter-meta")
        assert page.text_content("#chapter-text").startswith("# ")

    @step("a 401 refreshes the session once and the request goes through")
    def _():
        before = page.evaluate("() => JSON.parse(localStorage.getItem('primer.session'))")
        page.evaluate("""() => {
            const session = JSON.parse(localStorage.getItem('primer.session'));
            session.access_token = 'expired-or-forged';
            localStorage.setItem('primer.session', JSON.stringify(session));
        }""")
        refreshes = len(flow.seen("POST", "/api/auth/refresh", 200))
        page.click("[data-chapter='2']")
        page.wait_for_selector("#chapter[data-chapter='2']")
        assert flow.seen("GET", "/api/chapters/2/personalized", 401), "no 401 first"
        assert len(flow.seen("POST", "/api/auth/refresh", 200)) == refreshes + 1
        after = page.evaluate("() => JSON.parse(localStorage.getItem('primer.session'))")
        assert after["refresh_token"] != before["refresh_token"] and after["access_token"] != "expired-or-forged"

    @step("a tutor reply streams in pieces, shown as they come")
    def _():
        # Every text the reply showed, in order, as the page changed it.
        page.evaluate("""() => {
            window.replyTexts = [];
            new MutationObserver(() => {
                const reply = document.querySelector('.message.ai');
                if (reply && reply.dataset.state === 'streaming') window.replyTexts.push(reply.textContent);
            }).observe(document.querySelector('#conversation'), {subtree: true, childList: true, characterData: true});
        }""")
        page.fill("#ask textarea", "What is a ROS 2 topic?")
        page.click("#ask button")
        reply = page.wait_for_selector(".message.ai[data-state=done]")
        chunks = int(reply.get_attribute("data-chunks-before-end"))
        assert chunks >= 3, f"{chunks} pieces before `done`"
        assert int(reply.get_attribute("data-deltas")) == PIECES
        texts = [t for t in dict.fromkeys(page.evaluate("() => window.replyTexts")) if t]
        assert len(texts) >= 3 and all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts
        assert reply.text_content() == "".join(f"Piece {n + 1} of the answer. " for n in range(PIECES)), reply.text_content()
        page.wait_for_selector("#usage-text[data-messages-used='1']")

    @step("past the daily quota: 429, Retry-After and the request id shown to the reader")
    def _():
        for n in range(QUOTA):
            page.fill("#ask textarea", f"Another question, number {n}?")
            page.click("#ask button")
            if n + 1 < QUOTA:
                page.wait_for_selector(f".message.ai[data-state=done] >> nth={n + 1}")
        notice = page.wait_for_selector("#notice[data-code=quota_exceeded]")
        (_, _, status, headers) = [r for r in flow.responses if r[0] == "POST" and r[1].endswith("/messages")][-1]
        assert status == 429, status
        retry_after = int(headers["retry-after"])
        assert 1 <= retry_after <= 86400
        assert notice.get_attribute("data-retry-after") == str(retry_after)
        assert notice.get_attribute("data-request-id") == headers["x-request-id"]
        assert "Try again in" in notice.text_content() and headers["x-request-id"] in notice.text_content()
        page.wait_for_selector(f"#usage-text[data-messages-used='{QUOTA}']")

    @step("sign out: the session is revoked")
    def _():
        refresh_token = page.evaluate("() => JSON.parse(localStorage.getItem('primer.session')).refresh_token")
        page.click("#sign-out")
        page.wait_for_selector("#whoami[data-state=signed-out]")
        assert page.evaluate("() => localStorage.getItem('primer.session')") is None
        status, _, _ = http("POST", f"{flow.api}/api/auth/refresh", {"refresh_token": refresh_token})
        assert status == 401, status

    @step("the reset link the runner logged sets a new password")
    def _():
        status, _, _ = http("POST", f"{flow.api}/api/auth/password/forgot", {"email": flow.email})
        assert status == 202
        link = flow.logged_link("reset-password")
        assert link.startswith(f"{flow.api}/reset-password?token="), link
        reset = context.new_page()
        reset.goto(link)
        flow.password = PASSWORD + " renewed"
        reset.fill("#reset [name=password]", flow.password)
        reset.click("#reset button")
        reset.wait_for_selector("#result[data-state=done]")
        reset.close()
        page.fill("#sign-in [name=email]", flow.email)
        page.fill("#sign-in [name=password]", flow.password)
        page.click("#sign-in button")
        page.wait_for_selector("#whoami[data-state=signed-in]")

    @step("sign in with an OpenID Connect provider from the page's link")
    def _():
        page.click("#sign-out")
        page.wait_for_selector("#whoami[data-state=signed-out]")
        link = page.wait_for_selector("#sign-in-with:not([hidden]) a[data-provider=school]")
        assert link.text_content() == "Sign in with School", link.text_content()
        link.click()
        # The provider's own pages: who signs in, then consent.
        page.wait_for_selector("input[name=login]").fill(flow.oidc_account)
        page.click("button")
        page.click("form[action$='/confirm'] button")
        page.wait_for_selector("#whoami[data-state=signed-in]")
        assert flow.oidc_email in page.text_content("#whoami"), page.text_content("#whoami")
        # Back on the site's own page, the one-time code redeemed once and gone from the address.
        assert page.url.startswith(flow.site) and "#" not in page.url, page.url
        assert len(flow.seen("POST", "/api/auth/oauth/exchange", 200)) == 1
        token = page.evaluate("() => JSON.parse(localStorage.getItem('primer.session')).access_token")
        status, _, body = http("GET", f"{flow.api}/api/auth/accounts", headers={"authorization": f"Bearer {token}"})
        assert status == 200 and [m["provider"] for m in body["accounts"]] == ["school"], body
        page.click("#sign-out")
        page.wait_for_selector("#whoami[data-state=signed-out]")

    @step("a sign-in the reader declines at the provider comes back as a notice, signed out")
    def _():
        # A browser of its own: the provider has no session or grant of this reader yet.
        fresh = browser.new_context()
        fresh.set_default_timeout(15_000)
        declining = fresh.new_page()
        declining.on("pageerror", lambda e: page_errors.append(f"{declining.url}: {e}"))
        try:
            declining.goto(site_page)
            declining.wait_for_selector("#sign-in-with:not([hidden]) a[data-provider=school]").click()
            declining.wait_for_selector("input[name=login]").fill(flow.oidc_account)
            declining.click("button")
            declining.click("form[action$='/abort'] button")
            notice = declining.wait_for_selector("#notice.error")
            assert "access denied" in notice.text_content(), notice.text_content()
            assert declining.text_content("#whoami") == "Not signed in"
            assert declining.url.startswith(flow.site) and "#" not in declining.url, declining.url
        finally:
            fresh.close()

    @step("a page on an origin the API does not list gets no answer")
    def _():
        foreign = context.new_page()
        foreign.goto(f"{flow.foreign}/index.html?api={flow.api}")
        notice = foreign.wait_for_selector("#notice.error")
        assert "does not allow this page's origin" in notice.text_content(), notice.text_content()
        assert foreign.locator("#chapters li").count() == 0
        outcome = foreign.evaluate(
            """async (api) => {
                try { await fetch(api + "/api/chapters"); return "answered"; }
                catch (e) { return e.name; }
            }""",
            flow.api,
        )
        assert outcome == "TypeError", outcome
        foreign.close()
        # The runner did answer; it is the browser that kept the answer from the page.
        status, headers, _ = http("GET", f"{flow.api}/api/chapters", headers={"origin": flow.foreign})
        assert status == 200 and not [h for h in headers if h.lower().startswith("access-control-")], dict(headers)

    # A second reader, signed in by a Better-Auth server: primer reads its session cookie.
    cookie_context = browser.new_context()
    cookie_context.set_default_timeout(15_000)
    cookie_context.on("page", lambda p: p.on("pageerror", lambda e: page_errors.append(f"{p.url}: {e}")))
    reader = cookie_context.new_page()
    reader.on("response", flow.record)
    cookie_email = f"ba-{flow.email}"

    @step("Better-Auth's session cookie reaches primer with credentials: include")
    def _():
        reader.goto(f"{flow.site}/index.html?api={flow.api}&auth={flow.auth}")
        reader.wait_for_selector("#whoami[data-state=signed-out]")
        reader.fill("#sign-up [name=name]", "Grace")
        reader.fill("#sign-up [name=email]", cookie_email)
        reader.fill("#sign-up [name=password]", PASSWORD)
        reader.click("#sign-up button")
        reader.wait_for_selector("#whoami[data-state=signed-in]")
        assert cookie_email in reader.text_content("#whoami")
        cookies = {c["name"]: c for c in cookie_context.cookies()}
        cookie = cookies["better-auth.session_token"]
        assert cookie["domain"] == "127.0.0.1" and cookie["httpOnly"] and cookie["sameSite"] == "Lax", cookie
        assert "better-auth" not in reader.evaluate("() => document.cookie")
        statuses = reader.evaluate(
            """async (api) => Promise.all(["omit", "include"].map(async (credentials) =>
                (await fetch(api + "/api/auth/me", {credentials})).status))""",
            flow.api,
        )
        assert statuses == [401, 200], statuses
        me = [r for r in flow.responses if r[1] == f"{flow.api}/api/auth/me" and r[2] == 200][-1]
        assert me[3].get("access-control-allow-credentials") == "true"

    @step("Better-Auth's set-auth-token works as a bearer token")
    def _():
        result = reader.evaluate(
            """async ([auth, api, email, password]) => {
                const signIn = await fetch(auth + "/api/auth/sign-in/email", {
                    method: "POST", credentials: "include", headers: {"content-type": "application/json"},
                    body: JSON.stringify({email, password}),
                });
                const token = signIn.headers.get("set-auth-token");
                const me = await fetch(api + "/api/auth/me", {headers: {authorization: "Bearer " + token}});
                return {token: token !== null, status: me.status, email: (await me.json()).user?.email};
            }""",
            [flow.auth, flow.api, cookie_email, PASSWORD],
        )
        assert result == {"token": True, "status": 200, "email": cookie_email}, result

    @step("with the cookie: onboarding and a streamed reply, then sign-out ends the session")
    def _():
        reader.wait_for_selector("#profile-fields fieldset[data-field=python_proficiency]")
        reader.select_option("[data-field=python_proficiency] select", "Beginner")
        reader.select_option("[data-field=developer_role] select", "Frontend Developer")
        reader.check("[data-field='software_context.languages'] input[value=JavaScript]")
        reader.click("#profile-form button")
        reader.wait_for_selector("#onboarding[data-onboarded=true]")
        reader.fill("#ask textarea", "How do I start a ROS 2 node?")
        reader.click("#ask button")
        reply = reader.wait_for_selector(".message.ai[data-state=done]")
        assert int(reply.get_attribute("data-chunks-before-end")) >= 3
        reader.click("#sign-out")
        reader.wait_for_selector("#whoami[data-state=signed-out]")
        status = reader.evaluate("async (api) => (await fetch(api + '/api/auth/me', {credentials: 'include'})).status", flow.api)
        assert status == 401, status

    @step("no error in the pages' scripts")
    def _():
        assert not page_errors, page_errors

    return results


def main() -> int:
    flow = Flow()
    try:
        with sync_playwright() as playwright:
            arguments = [
                "--headless=new", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
            ]
            if os.geteuid() == 0:
                arguments.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
            browser = playwright.chromium.launch(
                executable_path=os.environ.get("PRIMER_CHROMIUM", "/usr/bin/chromium"), args=arguments
            )
            print(f"browser: {browser.version}; API {flow.api}, site {flow.site}, foreign {flow.foreign}, Better-Auth {flow.auth}")
            results = run(flow, browser)
            browser.close()
    finally:
        flow.stop()
    for name, failure, seconds in results:
        print(f"  {'ok  ' if failure is None else 'FAIL'}  {name} ({seconds:.1f} s){'' if failure is None else ': ' + failure}")
    failed = sum(1 for _, failure, _ in results if failure is not None)
    print(f"browser: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
