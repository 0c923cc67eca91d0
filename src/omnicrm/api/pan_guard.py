"""ASGI middleware refusing any request whose query string or body carries a payment card number
(PAN), in any written form (`domain/pan.py` normalises before it matches)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicrm.api.responses import Problem, problem
from omnicrm.domain.errors import ItemError
from omnicrm.domain.pan import contains_pan, find_pan_paths, mask

_BATCH_ITEM = re.compile(r"^items\[(\d+)\]\.?(.*)$")
_REASON = "looks like a payment card number; card numbers are never accepted"


def _errors(body: bytes) -> list[ItemError]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [ItemError(None, "(body)", _REASON)]
    errors = []
    for path in find_pan_paths(data):
        match = _BATCH_ITEM.match(path)
        index, field = (int(match.group(1)), match.group(2) or "(item)") if match else (None, path)
        errors.append(ItemError(index, field, _REASON))
    return errors


def _holds_pan(body: bytes) -> bool:
    """Scan the body as sent and, for JSON with escapes, as decoded (so "\\u0034" or "\\/" are seen
    as the digit and separator they stand for)."""
    if contains_pan(body.decode("utf-8", errors="replace")):
        return True
    if b"\\" not in body:
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return next(find_pan_paths(data), None) is not None


def _query_errors(query_string: bytes) -> list[ItemError]:
    """One error per query parameter (name masked) whose name or decoded value holds a PAN."""
    pairs = parse_qsl(query_string.decode("utf-8", errors="replace"), keep_blank_values=True)
    return [
        ItemError(None, f"query.{mask(name)}", _REASON)
        for name, value in pairs
        if contains_pan(name) or contains_pan(value)
    ]


def _refusal(errors: list[ItemError], where: str) -> Problem:
    return problem(
        422,
        "card_number_refused",
        "Card numbers are not accepted",
        f"the request {where} holds a payment card number; nothing was stored",
        errors,
    )


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body from the ASGI messages (None: the client went away)."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


class PanGuard:
    """Refuses with 422 a query string holding a PAN; buffers the body of write requests, refuses it
    with 422 if it holds a PAN, else replays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query_string: bytes = scope.get("query_string", b"")
        if query_string:
            errors = _query_errors(query_string)
            if errors:
                await _refusal(errors, "query string")(scope, receive, send)
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        if body and _holds_pan(body):
            await _refusal(_errors(body), "body")(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
