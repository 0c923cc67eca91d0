"""The OpenAPI contract: FastAPI's schema, plus every error status each operation can answer.

FastAPI documents a route's success and, for routes with parameters, a 422 in its own
`{"detail": [...]}` shape; but every error omnicrm answers is RFC 9457 problem+json
(`api/responses.py`), and a contract fuzzer holds the server to what the schema says. So the errors
are derived here from what each generated operation declares - a security requirement, path
parameters, a required look-up key, a request body - rather than written on each route: a route
added later is covered by the same rules.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

Json = dict[str, Any]

PROBLEM = "application/problem+json"
_SAFE = frozenset({"get", "head", "options"})
# Where a password is exchanged for a token: a wrong one is a 401 though the route needs no token,
# and too many tries in a row are throttled (429 with Retry-After).
_CREDENTIALS = frozenset({("post", "/v1/auth/login")})

_PROBLEM_SCHEMA: Json = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` lists every reason an input was refused.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:omnicrm:problem:<code>, stable"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "field", "reason"],
                "properties": {
                    "index": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
                    "field": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_RETRY_AFTER: Json = {
    "required": True,
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
}
_CHALLENGE: Json = {"required": True, "schema": {"type": "string", "const": "Bearer"}}

# Routes a provider or Kannel calls without a token prove their caller by a signature instead
# (api/feedback.py declares which); documented as security schemes so a client generator sends them.
SIGNATURES: Json = {
    "ProviderSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Omnicrm-Signature",
        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256(provider secret, '<t>.<raw body>')>",
    },
    "SignedUrl": {
        "type": "apiKey",
        "in": "query",
        "name": "sig",
        "description": "the HMAC omnicrm put in the URL it gave Kannel (dlr-url: sig; sms-service: token)",
    },
}

# status -> (component name, description, headers)
_ERRORS: dict[int, tuple[str, str, Json]] = {
    401: (
        "Unauthenticated",
        "No token, or an unknown, expired or revoked one",
        {"WWW-Authenticate": _CHALLENGE},
    ),
    403: ("Forbidden", "The caller's role may not do this", {}),
    404: ("NotFound", "What the path or the look-up names does not exist", {}),
    409: ("Conflict", "The request conflicts with the current state", {}),
    413: ("TooLarge", "The body is larger than the server takes", {}),
    422: ("InvalidInput", "The input breaks the contract or a rule; `errors` says where and why", {}),
    429: ("Throttled", "Too many tries: wait Retry-After seconds", {"Retry-After": _RETRY_AFTER}),
    503: (
        "Unavailable",
        "The database cannot take writes now (a full disk): nothing was stored; try again after Retry-After",
        {"Retry-After": _RETRY_AFTER},
    ),
}


def build(app: FastAPI, extra_schemas: Json) -> Json:
    """FastAPI's schema of `app` with `extra_schemas` added to the components, and the error
    responses of every operation."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(extra_schemas)
    schemas["Problem"] = _PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):  # replaced by Problem below
        schemas.pop(name, None)
    components["responses"] = {name: _error(text, headers) for name, text, headers in _ERRORS.values()}
    components.setdefault("securitySchemes", {}).update(SIGNATURES)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in statuses(path, method, operation):
                responses[str(status)] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
    return schema


def statuses(path: str, method: str, operation: Json) -> list[int]:
    """The error statuses `operation` can answer, from what it declares.

    422 and 503 everywhere: a card number in any query string is refused (api/pan_guard.py), and
    any route may meet a full disk. 401/403 with a token to check; 404 when the path names a thing,
    or a GET is a look-up by required keys; 409 for writes by a caller (state moved meanwhile, a
    duplicate, a transition not allowed); 413 with a body."""
    found = {422, 503}
    parameters = operation.get("parameters", [])
    if operation.get("security"):
        found |= {401, 403}
        if method not in _SAFE:
            found.add(409)
    if any(p.get("in") == "path" for p in parameters):
        found.add(404)
    if method == "get" and any(p.get("in") == "query" and p.get("required") for p in parameters):
        found.add(404)
    if "requestBody" in operation:
        found.add(413)
    if (method, path) in _CREDENTIALS:
        found |= {401, 429}
    return sorted(found)


def _error(description: str, headers: Json) -> Json:
    response: Json = {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        response["headers"] = headers
    return response
