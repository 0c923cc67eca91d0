"""Fast JSON responses (orjson) and RFC 9457 problem details."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from omnicrm.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    ItemError,
    NotFound,
    Unauthenticated,
    Unavailable,
)

_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Unauthenticated: 401,
    Unavailable: 503,
}


class FastJSON(JSONResponse):
    """JSON rendered by orjson (datetimes, dates and times as ISO 8601)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class Problem(JSONResponse):
    media_type = "application/problem+json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(
    status: int, code: str, title: str, detail: str, errors: list[ItemError] | None = None
) -> Problem:
    body: dict[str, Any] = {
        "type": f"urn:omnicrm:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Problem(body, status_code=status, headers=headers)


def domain_problem(exc: DomainError) -> Problem:
    """The problem response of a business error (its status from its class, 400 if none is mapped)."""
    status = next((_STATUS[cls] for cls in type(exc).__mro__ if cls in _STATUS), 400)
    errors = exc.errors if isinstance(exc, InvalidInput) else None
    answer = problem(status, exc.code, exc.title, exc.detail, errors)
    if isinstance(exc, Unavailable):
        answer.headers["Retry-After"] = str(exc.retry_after)
    return answer
