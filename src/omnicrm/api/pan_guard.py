"""ASGI middleware refusing any request body that carries a payment card number (PAN)."""

from __future__ import annotations

import re

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnicrm.api.responses import problem
from omnicrm.domain.errors import ItemError
from omnicrm.domain.pan import contains_pan, find_pan_paths

_BATCH_ITEM = re.compile(r"^items\[(\d+)\]\.?(.*)$")


def _errors(body: bytes) -> list[ItemError]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [
            ItemError(None, "(body)", "looks like a payment card number; card numbers are never accepted")
        ]
    errors = []
    for path in find_pan_paths(data):
        match = _BATCH_ITEM.match(path)
        index, field = (int(match.group(1)), match.group(2) or "(item)") if match else (None, path)
        errors.append(
            ItemError(index, field, "looks like a payment card number; card numbers are never accepted")
        )
    return errors


def _holds_pan(body: bytes) -> bool:
    """Scan the body as sent and, for JSON, as decoded (so \\u-escaped digits are seen as digits)."""
    if contains_pan(body.decode("utf-8", errors="replace")):
        return True
    if b"\\u" not in body:
        return False
    try:
        return contains_pan(orjson.dumps(orjson.loads(body)).decode())
    except orjson.JSONDecodeError:
        return False


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
    """Buffers the body of write requests, refuses it with 422 if it holds a PAN, else replays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        if body and _holds_pan(body):
            response = problem(
                422,
                "card_number_refused",
                "Card numbers are not accepted",
                "the request holds a payment card number; nothing was stored",
                _errors(body),
            )
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
