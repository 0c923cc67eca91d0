"""What a client's own actions on a message report: the open pixel, a tracked link, the unsubscribe
page (RFC 8058 one-click too). Each is authenticated by the message's signed token
(services/feedback/tokens.py) and becomes one report; an open counts once per message, a click
once per link, an unsubscribe once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from omnicrm.domain.errors import InvalidInput, ItemError, NotFound
from omnicrm.services.feedback.intake import Report
from omnicrm.services.feedback.tokens import verify

SOURCE = "tracking"


def message_key(token: str, secret: bytes) -> str:
    key = verify(token, secret)
    if key is None:
        raise NotFound("no such link")  # a forged or mangled token tells nothing more
    return key


def opened(key: str, now: datetime) -> Report:
    return Report(SOURCE, f"open:{key}", "opened", now, message_key=key)


def clicked(key: str, target: str | None, allowed_hosts: Sequence[str], now: datetime) -> Report:
    """A click on `target`; refused unless it is an http(s) link to one of the bank's hosts. A link
    without a target (the tap on a web push, which carries no link of its own) is a click as well."""
    if target is None:
        return Report(SOURCE, f"click:{key}:landing", "clicked", now, message_key=key)
    parts = urlsplit(target)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput("not a link", [ItemError(None, "u", "an http(s) URL is expected")])
    if not any(host == h or host.endswith(f".{h}") for h in (a.lower() for a in allowed_hosts)):
        raise InvalidInput(
            "this link's host is not one omnicrm redirects to",
            [ItemError(None, "u", f"{host} is not in OMNICRM_TRACKING_REDIRECT_HOSTS")],
        )
    link = hashlib.sha256(target.encode()).hexdigest()[:16]
    return Report(SOURCE, f"click:{key}:{link}", "clicked", now, message_key=key)


def unsubscribed(key: str, now: datetime) -> Report:
    return Report(SOURCE, f"unsubscribe:{key}", "unsubscribed", now, message_key=key)
