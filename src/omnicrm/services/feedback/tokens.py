"""Signed tokens in the links a message carries back to omnicrm (open pixel, tracked click,
unsubscribe, Kannel's delivery-receipt URL): the message's idempotency key and an HMAC of it, so a
link can be neither forged nor pointed at another person's message. Tracking routes are opened by a
client's mail program without a login: the token is their authentication."""

from __future__ import annotations

import base64
import hashlib
import hmac

from omnicrm.channels.base import Tracking

_SIG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: str, secret: bytes) -> str:
    """The token of the message with idempotency key `key`."""
    raw = key.encode()
    mac = hmac.new(secret, raw, hashlib.sha256).digest()[:_SIG_BYTES]
    return f"{_b64(raw)}.{_b64(mac)}"


def verify(token: str, secret: bytes) -> str | None:
    """The idempotency key a token was signed for, or None if it is malformed or forged."""
    body, _, sig = token.partition(".")
    try:
        raw, mac = _unb64(body), _unb64(sig)
        key = raw.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    expected = hmac.new(secret, raw, hashlib.sha256).digest()[:_SIG_BYTES]
    return key if hmac.compare_digest(mac, expected) else None


def tracking(key: str, secret: bytes, public_url: str) -> Tracking:
    """The open pixel, click redirect and unsubscribe URLs of one message."""
    token = sign(key, secret)
    base = public_url.rstrip("/")
    return Tracking(
        open_url=f"{base}/t/{token}/open.gif",
        click_url=f"{base}/t/{token}/click",
        unsubscribe_url=f"{base}/t/{token}/unsubscribe",
    )
