"""The card-number checks of a request's query string and body, in any written form (`domain/pan.py`
normalises before it matches); the front door (`api/front_door.py`) runs them on every request."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson

from omnicrm.api.responses import Problem, problem
from omnicrm.domain.errors import ItemError
from omnicrm.domain.pan import contains_pan, find_pan_paths, mask

_BATCH_ITEM = re.compile(r"^items\[(\d+)\]\.?(.*)$")
_REASON = "looks like a payment card number; card numbers are never accepted"


def body_errors(body: bytes) -> list[ItemError]:
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


def holds_pan(body: bytes) -> bool:
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


def query_errors(query_string: bytes) -> list[ItemError]:
    """One error per query parameter (name masked) whose name or decoded value holds a PAN."""
    pairs = parse_qsl(query_string.decode("utf-8", errors="replace"), keep_blank_values=True)
    return [
        ItemError(None, f"query.{mask(name)}", _REASON)
        for name, value in pairs
        if contains_pan(name) or contains_pan(value)
    ]


def path_errors(path: str) -> list[ItemError]:
    """An error when the (already percent-decoded) URL path holds a PAN, e.g. as a resource id."""
    return [ItemError(None, "path", _REASON)] if contains_pan(path) else []


def refusal(errors: list[ItemError], where: str) -> Problem:
    return problem(
        422,
        "card_number_refused",
        "Card numbers are not accepted",
        f"the request {where} holds a payment card number; nothing was stored",
        errors,
    )
