"""The internet bank's and the app's side of omnicrm: the client's inbox of rendered messages, the
first read of one (an `opened` reaction bound to that message, stored through the intake once), and
the browser's web push subscriptions per device.

A profile's rows stay where they were written; a read goes through the live profile to every
profile merged into it, so after a merge the survivor's inbox and devices are the union, and an
unmerge gives each profile back exactly its own without moving a row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, StringConstraints, field_validator
from sqlalchemy.engine import Connection

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import InvalidInput, ItemError, NotFound
from omnicrm.services.contracts import Strict
from omnicrm.services.intake import ingest
from omnicrm.services.profiles.customers import live_id
from omnicrm.store import inbox as store
from omnicrm.store import push_subscriptions
from omnicrm.store.merging import descendants

log = logging.getLogger(__name__)
REACTION = "message.reaction"
DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
_ITEM = ("message_key", "title", "body", "language", "created_at", "read_at")


def _profiles(conn: Connection, customer_id: str) -> tuple[str, set[str]]:
    """The live profile behind an id and every profile merged into it (NotFound if none)."""
    live = live_id(conn, customer_id)
    return live, descendants(conn, live)


def _item(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in _ITEM}


def _cursor(row: dict[str, Any]) -> str:
    raw = orjson.dumps([row["created_at"].isoformat(), row["message_key"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        at, key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), str(key)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("bad cursor", [ItemError(None, "cursor", "not a cursor this API gave")]) from exc


def inbox_of(conn: Connection, customer_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The client's messages, newest first, with how many are unread."""
    live, ids = _profiles(conn, customer_id)
    rows = store.page(conn, ids, before=_decode(cursor) if cursor else None, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "customer_id": live,
        "unread": store.unread(conn, ids),
        "items": [_item(r) for r in rows],
        "next_cursor": _cursor(rows[-1]) if more and rows else None,
    }


def opened_event_id(message_key: str) -> str:
    """One `opened` event per inbox message: a second read, or a replay, is the intake's duplicate."""
    return "inapp-opened-" + hashlib.sha256(message_key.encode()).hexdigest()[:40]


def mark_read(
    conn: Connection, customer_id: str, message_key: str, *, actor: str, catalogue: Catalogue, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Mark a message read; the first read (True) is stored as an `opened` reaction bound to it."""
    _, ids = _profiles(conn, customer_id)
    row = store.get(conn, message_key)
    if row is None or row["customer_id"] not in ids:
        raise NotFound(f"message {message_key} is not in this client's inbox")
    first = store.mark_read(conn, message_key, now)
    if first:
        raw = {
            "event_id": opened_event_id(message_key),
            "type": REACTION,
            "occurred_at": now,
            "source": "channel",
            "channel": "inapp",
            "customer_id": row["customer_id"],
            "attributes": {"message_id": message_key, "reaction": "opened"},
        }
        prepared = ingest.prepare([raw], catalogue, ingest.EVENT_KINDS, system=True, pan_scanned=True)
        ingest.ingest(conn, prepared, actor=actor, now=now)
        log.info("inbox message read: %s", message_key)
    found = store.get(conn, message_key)
    assert found is not None
    return _item(found), first


# --- web push subscriptions ---------------------------------------------------------------------
def _b64url(value: str) -> bytes:
    if not value or any(c in value for c in "+/"):
        raise ValueError("must be base64url (RFC 4648 §5: '-' and '_', no '+' or '/')")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not valid base64url") from exc


class PushKeys(Strict):
    """The subscription's keys (RFC 8291): the browser's P-256 public key and its auth secret."""

    # base64url of 65 bytes (an uncompressed P-256 point) and of 16 bytes, padded or not
    p256dh: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{87}=?$")]
    auth: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22}(==)?$")]

    @field_validator("p256dh")
    @classmethod
    def _public_key(cls, value: str) -> str:
        raw = _b64url(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError(
                f"must be an uncompressed P-256 point (65 bytes, 0x04 first); got {len(raw)} bytes"
            )
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError as exc:
            raise ValueError("is not a point on the P-256 curve") from exc
        return value.rstrip("=")

    @field_validator("auth")
    @classmethod
    def _auth_secret(cls, value: str) -> str:
        raw = _b64url(value)
        if len(raw) != 16:
            raise ValueError(f"must be a 16-byte auth secret; got {len(raw)} bytes")
        return value.rstrip("=")


class PushSubscriptionIn(Strict):
    """What the browser's `PushSubscription.toJSON()` gives."""

    endpoint: Annotated[str, StringConstraints(pattern=r"^https://[^/?#@\s]+(?:[/?#]\S*)?$", max_length=1000)]
    expirationTime: int | None = Field(default=None, ge=0)  # noqa: N815 - the browser's own name
    keys: PushKeys

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL of the push service")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        return value


def put_subscription(
    conn: Connection, customer_id: str, device_id: str, body: PushSubscriptionIn, *, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Store a device's subscription (replacing its previous one); True when the device is new."""
    live = live_id(conn, customer_id)
    created = push_subscriptions.put(
        conn, live, device_id, endpoint=body.endpoint, p256dh=body.keys.p256dh, auth=body.keys.auth, now=now
    )
    return {"customer_id": live, "device_id": device_id, "created_at": now}, created


def delete_subscription(conn: Connection, customer_id: str, device_id: str) -> None:
    _, ids = _profiles(conn, customer_id)
    if not push_subscriptions.remove_device(conn, ids, device_id):
        raise NotFound(f"no push subscription for device {device_id}")
