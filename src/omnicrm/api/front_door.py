"""ASGI middleware every request passes first: it refuses what must never reach a route, as early
and as cheaply as it can, and puts the security headers on every answer.

For a request with a body (POST, PUT, PATCH) it checks, in this order, before FastAPI sees it:
1. the URL path and the query string hold no card number (422; `api/pan_guard.py`; for every
   request, whatever its method);
2. the caller: on a route that needs a token, the token and the role the route asks for
   (401/403, `api/guards.py` reads them from the route), so an anonymous 10 MB upload is refused
   without reading a byte of it;
3. the size: a `Content-Length` over the limit is refused at once (413), and a body streamed
   without one is cut as soon as it passes the limit (413). Routes named `…:batch` get the batch
   limit, every other route the single-body one (`OMNICRM_MAX_BODY_BYTES`,
   `OMNICRM_MAX_BATCH_BODY_BYTES`);
4. the body holds no card number (422).
The body it read is then handed on unchanged. The route checks the caller again: the token cache
(`api/deps.py`) makes the second look-up a dictionary hit."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicrm.api.deps import authorise, scope_token
from omnicrm.api.guards import Guard, api_routes, guard_of
from omnicrm.api.pan_guard import body_errors, holds_pan, path_errors, query_errors, refusal
from omnicrm.api.responses import Problem, domain_problem, problem
from omnicrm.domain.errors import DomainError

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Every answer: no MIME sniffing, no framing, no referrer; the API's answers load nothing at all.
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Swagger UI: its own script and styles from this server only (no inline script: api/app.py serves
# the start-up script as a file); Swagger sets inline styles and data: images itself.
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'",
)
_NO_STORE = (b"cache-control", b"no-store")  # personal data: in no browser or proxy cache


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def too_large(limit: int) -> Problem:
    return problem(
        413,
        "body_too_large",
        "Request body too large",
        f"this route takes bodies of at most {limit} bytes; nothing was read further or stored",
    )


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body from the ASGI messages (None: the client went away); BodyTooLarge as
    soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class FrontDoor:
    """See the module docstring. `api` is the FastAPI app whose routes say who may call them."""

    def __init__(self, app: ASGIApp, api: FastAPI, max_body: int, max_batch_body: int) -> None:
        self.app, self.api = app, api
        self.max_body, self.max_batch_body = max_body, max_batch_body
        self._routes: list[tuple[APIRoute, Guard]] | None = None

    def _guard(self, scope: Scope) -> Guard | None:
        """The guard of the route the request goes to (None: no route; FastAPI answers 404/405)."""
        if self._routes is None:  # the routes are all in place by the first request
            self._routes = [(r, guard_of(r)) for r in api_routes(self.api.routes)]
        for route, guard in self._routes:
            if route.matches(scope)[0] is Match.FULL:
                return guard
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(scope["path"], send)
        errors = path_errors(scope["path"])
        if errors:
            await refusal(errors, "path")(scope, receive, send)
            return
        query_string: bytes = scope.get("query_string", b"")
        errors = query_errors(query_string) if query_string else []
        if errors:
            await refusal(errors, "query string")(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._checked_body(scope, receive)
        except DomainError as exc:
            await domain_problem(exc)(scope, receive, send)
            return
        except BodyTooLarge as exc:
            await too_large(exc.limit)(scope, receive, send)
            return
        if body is None:
            return
        if body and holds_pan(body):
            await refusal(body_errors(body), "body")(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The body, read only after the caller passed the route's guard and within its limit."""
        guard = self._guard(scope)
        if guard is not None and not guard.open:
            authorise(self.api.state, scope_token(scope), guard.permission)
        limit = self.max_batch_body if scope["path"].endswith(":batch") else self.max_body
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            raise BodyTooLarge(limit)
        return await read_body(receive, limit)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(path: str, send: Send) -> Send:
    extra = [*_HEADERS]
    if path.startswith("/docs"):
        extra.append(_DOCS_CSP)
    else:
        extra.append(_API_CSP)
    if path.startswith("/v1/"):
        extra.append(_NO_STORE)

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[Any] = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            headers.extend(h for h in extra if h[0] not in present)
            message = {**message, "headers": headers}
        await send(message)

    return sending
