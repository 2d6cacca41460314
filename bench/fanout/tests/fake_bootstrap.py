#!/usr/bin/env python3
"""A stand-in bootstrap for the driver's test: a Lambda runtime loop whose behaviour is its
function name (served, refused, errors, hangs, exits). It answers 500 when the driver's event or
Lambda's variables and headers are not what Lambda gives."""

import http.client
import json
import os
import sys
import time

api = os.environ["AWS_LAMBDA_RUNTIME_API"]
mode = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
connection = http.client.HTTPConnection(api)  # one kept-alive connection, as the runtime keeps
invocations = 0
while True:
    connection.request("GET", "/2018-06-01/runtime/invocation/next")
    event = connection.getresponse()
    body = event.read()
    request_id = event.getheader("Lambda-Runtime-Aws-Request-Id")
    invocations += 1
    expected = (
        json.loads(body) == {"ping": mode}
        and int(event.getheader("Lambda-Runtime-Deadline-Ms")) > time.time() * 1000
        and event.getheader("Lambda-Runtime-Invoked-Function-Arn").endswith(f":function:{mode}")
        and event.getheader("Lambda-Runtime-Trace-Id").startswith("Root=1-")
        and os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
        and os.environ["FAKE_SETTING"] == "from the spec"
        and "HOME" not in os.environ
    )
    route = "response"
    if not expected:
        answer = {"statusCode": 500, "body": "unexpected event, headers or variables"}
    elif mode == "served":
        answer = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}
    elif mode == "refused":
        answer = {"statusCode": 503, "headers": {"retry-after": "2"}, "body": "busy"}
    elif mode == "errors":
        route, answer = "error", {"errorType": "Boom", "errorMessage": "the handler failed"}
    elif mode == "hangs":
        time.sleep(3600)
    elif mode == "exits" and invocations == 3:
        sys.exit(3)
    else:
        answer = {"statusCode": 200, "body": "{}"}
    connection.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/{route}", body=json.dumps(answer))
    connection.getresponse().read()
