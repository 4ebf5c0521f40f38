"""Checks one real HTTP answer against the published OpenAPI document (bot/channels/web_openapi).

The status must be documented for the operation, the body must be JSON and valid against the
documented schema, and a status documented with a header (Retry-After) must carry it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bot.channels.web.openapi import DOCUMENT

_ROOT = "urn:intake-openapi"
_REGISTRY: Registry[Any] = Registry().with_resource(
    _ROOT, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template)
    for template in DOCUMENT["paths"]
]


def template_of(path: str) -> str | None:
    for pattern, template in _TEMPLATES:
        if pattern.match(path.split("?", 1)[0]):
            return template
    return None


def check_response(
    method: str, path: str, status: int, headers: Mapping[str, str], raw: bytes
) -> Any:
    """Assert the answer is one the document promises; returns the parsed body."""
    assert status < 500 or status == 503, (method, path, status, raw[:300])
    content_type = headers.get("Content-Type", "")
    assert content_type.startswith("application/json"), (status, content_type, raw[:300])
    body = json.loads(raw)
    template = template_of(path)
    if template is None:  # not an API path: any JSON error will do, in the one shape
        _validate(body, "Error")
        return body
    operation = DOCUMENT["paths"][template].get(method.lower())
    if operation is None:
        assert status == 405, (method, path, status)
        _validate(body, "Error")
        return body
    documented = operation["responses"].get(str(status))
    assert documented is not None, f"{method} {template} answered undocumented {status}: {body}"
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is not None:
        _validate(body, schema["$ref"].rsplit("/", 1)[1])
    for header in documented.get("headers", {}):
        assert header in headers, f"{status} without {header}"
    return body


def _validate(body: Any, name: str) -> None:
    schema = {"$ref": f"{_ROOT}#/components/schemas/{name}"}
    validator = Draft202012Validator(schema, registry=_REGISTRY)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(
        f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]
    )
