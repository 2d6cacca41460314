#!/usr/bin/env python3
"""Every example of an OpenAPI 3.1 document is valid against its schema.

    openapi_examples.py openapi.json

Checks the examples of the component schemas, of every request body and response (named ones
included), and of each event of a `text/event-stream` example against the `ReplyEvent` schema
its `x-itemSchema` names, with JSON Schema 2020-12 (the dialect of OpenAPI 3.1) and the
document's own `$ref`s. Needs the `jsonschema` package. Prints each failure and a closing
"examples: N passed, M failed"; exits 1 on any failure.
"""

import json
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = "urn:openapi"


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def media_examples(document):
    """(where, schema pointer, example) of every media type's example."""
    def of(content, where, pointer):
        for media_type, media in (content or {}).items():
            if "example" in media and "schema" in media:
                yield f"{where} {media_type}", f"{pointer}/{escape(media_type)}/schema", media["example"], media
    for name, response in document.get("components", {}).get("responses", {}).items():
        yield from of(response.get("content"), f"response {name}", f"/components/responses/{escape(name)}/content")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            base = f"/paths/{escape(path)}/{method}"
            body = operation.get("requestBody", {})
            yield from of(body.get("content"), f"{method.upper()} {path} request", f"{base}/requestBody/content")
            for status, response in operation["responses"].items():
                yield from of(response.get("content"), f"{method.upper()} {path} {status}", f"{base}/responses/{status}/content")


def events(stream: str):
    """The events of a Server-Sent Events text: {event, id, data}."""
    for block in stream.strip("\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        yield fields


def main(path: str) -> int:
    document = json.load(open(path))
    registry = Registry().with_resource(ROOT, Resource.from_contents(document, default_specification=DRAFT202012))

    def errors(schema_pointer: str, value):
        validator = Draft202012Validator({"$ref": f"{ROOT}#{schema_pointer}"}, registry=registry)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(value)]

    checked, failures = 0, []

    def check(where, schema_pointer, value):
        nonlocal checked
        checked += 1
        failures.extend(f"{where}: {problem}" for problem in errors(schema_pointer, value))

    for name, schema in document["components"]["schemas"].items():
        for n, example in enumerate(schema.get("examples", [])):
            check(f"schema {name} example {n}", f"/components/schemas/{escape(name)}", example)
    for where, schema_pointer, example, media in media_examples(document):
        check(where, schema_pointer, example)
        item = media.get("x-itemSchema", {}).get("$ref", "")
        if item.startswith("#/components/schemas/") and isinstance(example, str):
            name = item.removeprefix("#/components/schemas/")
            for event in events(example):
                check(f"{where} event {event.get('id')}", f"/components/schemas/{escape(name)}", event)
                branch = next((b for b in document["components"]["schemas"][name]["oneOf"]
                               if b["properties"]["event"].get("const") == event.get("event")), None)
                if branch is None:
                    failures.append(f"{where}: event {event.get('event')!r} is not a {name}")
                    continue
                data_pointer = f"/components/schemas/{escape(name)}/oneOf/{document['components']['schemas'][name]['oneOf'].index(branch)}/properties/data/contentSchema"
                check(f"{where} event {event.get('id')} data", data_pointer, json.loads(event["data"]))
    for failure in failures:
        print(f"  {failure}")
    print(f"examples: {checked - len({f.split(': ')[0] for f in failures})} passed, {len({f.split(': ')[0] for f in failures})} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "openapi.json"))
