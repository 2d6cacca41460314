"""Schemathesis hooks for scripts/schemathesis: bearer tokens for the operations that need one.

The runner's first user (registered by scripts/schemathesis, e-mail and password in
PRIMER_ST_EMAIL / PRIMER_ST_PASSWORD) logs in again every few seconds, so that a generated
`POST /api/auth/logout-all` or `DELETE /api/auth/sessions/{id}` revokes one session, not the
rest of the run. Operations without a `security` requirement (public ones) are sent as
generated.
"""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["PRIMER_ST_URL"]


def _login():
    body = json.dumps({"email": os.environ["PRIMER_ST_EMAIL"], "password": os.environ["PRIMER_ST_PASSWORD"]})
    request = urllib.request.Request(
        BASE + "/api/auth/login", data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["session"]["access_token"]


@schemathesis.auth(refresh_interval=5)
class SignedIn:
    def get(self, case, context):
        return _login()

    def set(self, case, data, context):
        if not case.operation.definition.raw.get("security"):
            return
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
