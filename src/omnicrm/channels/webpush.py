"""Web push: a notification to a browser or app through its push service (RFC 8030).

The client's device subscribes at its push service (FCM, Mozilla autopush, Apple) with our VAPID
public key and hands us the subscription: an endpoint URL and two keys. We encrypt the payload to
the device's keys (RFC 8291 `aes128gcm`, pywebpush over http_ece), so the push service carries what
it cannot read, and sign a VAPID token (RFC 8292, py_vapid), so it accepts messages for this
subscription from us only. The service keeps the message up to `TTL` seconds for a device that is
offline.

Headers and answers, and why:
  Topic    derived from the idempotency key: a retried push replaces the copy still waiting at the
           push service, so the device shows one notification, not two (RFC 8030 §5.4)
  Urgency  lets the device save battery on low-value messages (RFC 8030 §5.3)
  201/202  accepted; the `Location` of the push message resource is the provider id
  404/410  the subscription is gone: `Permanent(gone=True)`, and dispatch deletes it
  429/5xx  the push service's own trouble: `Transient`, after `Retry-After` when it says
  other    the message is refused (a bad token, too large): `Permanent`

The endpoint comes from the client, so it is checked (https, no credentials in it) before we post to
it, and neither it nor the payload is ever written to a log line or a reason.
The push service's certificate is checked against the public CAs (certifi), or the bundle named by
`SSL_CERT_FILE` where a bank runs its own CA (and where the tests' local push service is trusted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from pywebpush import WebPusher

from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Transient

MAX_PAYLOAD = 4096  # RFC 8030 §7.2 / RFC 8291 §4: every push service takes 4096 octets of ciphertext
TOPIC_LENGTH = 32  # RFC 8030 §5.4: at most 32 characters of the base64url alphabet
URGENCIES = ("very-low", "low", "normal", "high")  # RFC 8030 §5.3
PROVIDER_ID_MAX = 200  # the outbox's provider_id column; a longer Location falls back to the key
VAPID_LIFETIME = 12 * 3600  # RFC 8292 §2: `exp` no more than 24 hours ahead; half leaves clock slack


@dataclass(frozen=True, slots=True)
class WebPushConfig:
    """What one web push sender needs. `vapid_private_key` is PEM or the base64url raw 32-byte
    scalar that `generate_vapid_keys` prints; `vapid_subject` tells the push service whom to call
    about our traffic (mailto: or https:)."""

    vapid_private_key: str = field(repr=False)
    vapid_subject: str
    ttl: int = 86_400  # a day: an offer older than that on a device that was off is stale
    urgency: str = "normal"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.vapid_subject.startswith(("mailto:", "https:")):
            raise ValueError("the VAPID subject is a mailto: or https: URI (RFC 8292 §2.1)")
        if self.urgency not in URGENCIES:
            raise ValueError(f"urgency is one of {', '.join(URGENCIES)}")
        if self.ttl < 0:
            raise ValueError("TTL is a number of seconds, 0 or more")
        if self.timeout <= 0:
            raise ValueError("the timeout must be positive")


@dataclass(frozen=True, slots=True)
class VapidKeys:
    """A fresh VAPID key pair: `private_key` goes to the settings, `public_key` to the apps (their
    `applicationServerKey` for `PushManager.subscribe`)."""

    private_key: str = field(repr=False)
    public_key: str


def generate_vapid_keys() -> VapidKeys:
    """A new P-256 key pair for VAPID, both halves base64url as browsers and settings take them."""
    key = ec.generate_private_key(ec.SECP256R1())
    return VapidKeys(_b64url(key.private_numbers().private_value.to_bytes(32, "big")), _public_key(key))


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The VAPID private key from PEM or from the base64url raw scalar; anything else is refused
    here, at start-up, rather than at the first send."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(stripped.encode(), password=None)
    else:
        raw = _b64url_decode(_unpadded_b64url(stripped))
        if raw is None or len(raw) != 32:
            raise ValueError("a raw VAPID private key is 32 bytes in base64url")
        key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("a VAPID key is an elliptic-curve key on P-256")
    return key


def push_topic(idempotency_key: str) -> str:
    """The `Topic` of one outbox message: the same key gives the same topic, so the push service
    replaces an undelivered earlier attempt instead of queueing a second notification."""
    return _b64url(hashlib.sha256(idempotency_key.encode()).digest())[:TOPIC_LENGTH]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A push subscription as the browser's `PushSubscription.toJSON()` gives it."""

    endpoint: str
    p256dh: str
    auth: str

    def to_json(self) -> str:
        """The `Outgoing.to` of a stored subscription (a `push_subscriptions` row)."""
        return json.dumps({"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}})

    @property
    def audience(self) -> str:
        """The VAPID `aud`: the origin of the push service (RFC 8292 §2)."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}"


def parse_subscription(text: str) -> Subscription | str:
    """The subscription in `Outgoing.to`, or why it cannot be one (never quoting it: the endpoint
    identifies a device)."""
    try:
        data = json.loads(text)
    except ValueError:
        return "the push subscription is not JSON"
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict):
        return "the push subscription has no keys"
    endpoint, p256dh, auth = data.get("endpoint"), keys.get("p256dh"), keys.get("auth")
    if not (isinstance(endpoint, str) and isinstance(p256dh, str) and isinstance(auth, str)):
        return "the push subscription needs endpoint, keys.p256dh and keys.auth"
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        return "the push endpoint is not a plain https URL"
    # Some browsers gave standard base64 with padding; the push keys are the same bytes.
    p256dh, auth = _unpadded_b64url(p256dh), _unpadded_b64url(auth)
    point, secret = _b64url_decode(p256dh), _b64url_decode(auth)
    if secret is None or len(secret) != 16:
        return "the push subscription's auth secret is not 16 bytes"
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point or b"")
    except ValueError:
        return "the push subscription's p256dh is not a P-256 public key"
    return Subscription(endpoint, p256dh, auth)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: it is either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class WebPushChannel(Channel):
    """Web push through the subscription's push service, one keep-alive HTTP client per instance
    (httpx's pool is thread-safe, so the dispatch threads share it)."""

    channel = "webpush"
    # A notification shows a line of title and a few of body, and the device cuts the rest; these
    # bounds keep a Cyrillic title and body (2 bytes a letter) well under the 4 KB ciphertext.
    max_title: ClassVar[int | None] = 100
    max_body: ClassVar[int | None] = 1000
    max_payload: ClassVar[int] = MAX_PAYLOAD

    def __init__(self, provider: str, config: WebPushConfig, *, rate_per_second: float | None = None) -> None:
        super().__init__(provider, rate_per_second=rate_per_second)
        self.config = config
        self._vapid = Vapid02(load_vapid_key(config.vapid_private_key))
        self._http = httpx.Client(timeout=config.timeout, follow_redirects=False)

    @property
    def application_server_key(self) -> str:
        """The VAPID public key, base64url: what the apps pass to `PushManager.subscribe`."""
        return _public_key(self._vapid.private_key)

    def _send(self, message: Outgoing) -> SendResult:
        subscription = parse_subscription(message.to)
        if isinstance(subscription, str):
            return Permanent(f"{self.provider}: {subscription}")
        options = self._options(message.extra)
        if isinstance(options, str):
            return Permanent(f"{self.provider}: {options}")
        ttl, urgency = options
        body = self._encrypt(subscription, payload(message))
        if len(body) > self.max_payload:
            return Permanent(
                f"{self.provider}: the encrypted push is {len(body)} bytes; push services take at most "
                f"{self.max_payload}"
            )
        headers = {
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(ttl),
            "Urgency": urgency,
            "Topic": push_topic(message.idempotency_key),
            **self._authorization(subscription.audience),
        }
        try:
            response = self._http.post(subscription.endpoint, content=body, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out; the URL stays out of the reason
            return Transient(f"{self.provider}: {type(exc).__name__}")
        return self._result(message, response)

    def _options(self, extra: Mapping[str, str]) -> tuple[int, str] | str:
        """TTL and urgency: the configured defaults, or the message's own in `extra`."""
        ttl_text = extra.get("ttl")
        urgency = extra.get("urgency", self.config.urgency)
        if ttl_text is not None and not (ttl_text.isascii() and ttl_text.isdigit()):
            return "extra ttl is a number of seconds"
        if urgency not in URGENCIES:
            return f"extra urgency is one of {', '.join(URGENCIES)}"
        return (int(ttl_text) if ttl_text is not None else self.config.ttl), urgency

    def _encrypt(self, subscription: Subscription, plaintext: bytes) -> bytes:
        """RFC 8291 aes128gcm: a fresh ephemeral key and salt each time, one record."""
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        encoded: Any = WebPusher(info).encode(plaintext, content_encoding="aes128gcm")
        body: bytes = encoded["body"]
        return body

    def _authorization(self, audience: str) -> dict[str, str]:
        """`Authorization: vapid t=<ES256 JWT>, k=<public key>` for this push service."""
        claims = {"aud": audience, "exp": int(time.time()) + VAPID_LIFETIME, "sub": self.config.vapid_subject}
        headers: dict[str, str] = self._vapid.sign(claims)
        return headers

    def _result(self, message: Outgoing, response: httpx.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            location = response.headers.get("Location", "")
            provider_id = location if 0 < len(location) <= PROVIDER_ID_MAX else message.idempotency_key
            return Accepted(self.provider, provider_id)
        if status in (404, 410):
            return Permanent(f"{self.provider}: the push subscription is gone ({status})", gone=True)
        if status == 429 or status >= 500:
            return Transient(
                f"{self.provider}: the push service answered {status}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        return Permanent(f"{self.provider}: the push service refused the message ({status})")

    def close(self) -> None:
        self._http.close()


def payload(message: Outgoing) -> bytes:
    """The plaintext the service worker gets: JSON with the texts, the message id it reports back
    with, and the tracked link (its target, from `extra["url"]`, appended as `?u=`)."""
    data: dict[str, str] = {
        "title": message.title or "",
        "body": message.body,
        "message_id": message.idempotency_key,
    }
    target = message.extra.get("url")
    if message.tracking is not None:
        click = message.tracking.click_url
        if target:
            click += ("&" if "?" in click else "?") + "u=" + quote(target, safe="")
        data["url"] = click
    elif target:
        data["url"] = target
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _public_key(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unpadded_b64url(text: str) -> str:
    return text.strip().replace("+", "-").replace("/", "_").rstrip("=")


def _b64url_decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
