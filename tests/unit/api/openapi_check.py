"""Check a real response against the shipped OpenAPI document (JSON Schema 2020-12)."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from kycedge.unit.api.server import openapi_document

DOC = openapi_document()
CHECKED: set[tuple[str, str, int]] = set()


def _template(path: str) -> str:
    for template in DOC["paths"]:
        escaped = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        if re.match("^" + re.sub(r"\{[^}]+\}", "[^/]+", escaped) + "$", path):
            return str(template)
    raise AssertionError(f"{path}: not in the OpenAPI document")


def check(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """Raise if the response is not what the document says for (path, method, status)."""
    template = _template(path.split("?")[0])
    op = DOC["paths"][template][method.lower()]
    responses = op["responses"]
    assert str(status) in responses, f"{method} {template}: status {status} not documented"
    spec = responses[str(status)]
    for name in spec.get("headers", {}):
        assert name.lower() in headers, f"{method} {template} {status}: header {name} missing"
    content = spec.get("content")
    if not content:
        assert body == b"", f"{method} {template} {status}: expected no body"
    else:
        ctype = headers.get("content-type", "").split(";")[0]
        assert ctype in content, f"{method} {template} {status}: content type {ctype} not documented"
        if ctype == "application/json":
            schema = {"components": DOC["components"], "allOf": [content[ctype]["schema"]]}
            Draft202012Validator(schema).validate(json.loads(body))
    CHECKED.add((method.upper(), template, status))


def check_event(event: dict[str, Any]) -> None:
    schema = {"components": DOC["components"], "$ref": "#/components/schemas/Event"}
    Draft202012Validator(schema).validate(event)
