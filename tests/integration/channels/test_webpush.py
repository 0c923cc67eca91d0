"""The web push channel against a local push service started by the test.

The service plays the browser's push service: it checks the VAPID token (the ES256 signature with
`cryptography`, the audience and the key the subscription was made with) and decrypts the body with
`http_ece` using the subscription's private key, which only the "device" (this test) holds. It
records what it saw and answers as scripted per endpoint path, so each test can assert on the real
effect: what a device would have read, or that nothing reached the service at all.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from omnicrm.channels.base import Accepted, Outgoing, Permanent, Tracking, Transient
from omnicrm.channels.webpush import (
    Subscription,
    WebPushChannel,
    WebPushConfig,
    generate_vapid_keys,
    load_vapid_key,
    push_topic,
    retry_after_seconds,
)

SUBJECT = "mailto:push-admin@bank.example"
TITLE = "Ваш депозит завершується"
BODY = "Через 10 днів завершується строк вашого депозиту «Класичний». Продовжіть його онлайн — ставка 14 %."


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Seen:
    """One request as the push service received it."""

    path: str
    headers: dict[str, str]
    client_port: int
    claims: dict[str, object] | None = None  # the verified VAPID claims; None when refused
    plaintext: bytes | None = None


@dataclass
class Device:
    """A browser's subscription: the ECDH key pair and auth secret only the device knows."""

    path: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def subscription(self, origin: str) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"p256dh": _b64url(point), "auth": _b64url(self.auth)}
        return json.dumps({"endpoint": origin + self.path, "keys": keys})


class PushService:
    """A threaded HTTP server that verifies VAPID and decrypts like a push service + browser."""

    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.devices: dict[str, Device] = {}
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}  # path -> status, headers
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> PushService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def device(self, answer: int = 201, headers: dict[str, str] | None = None) -> Device:
        device = Device(f"/push/{uuid.uuid4().hex}")
        self.devices[device.path] = device
        self.answers[device.path] = (answer, headers or {})
        return device

    def seen_at(self, device: Device) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == device.path]

    def verify_vapid(self, authorization: str) -> dict[str, object] | None:
        """RFC 8292: `vapid t=<JWT>, k=<key>`, the JWT signed ES256 by k, aud our origin, and k the
        key the subscription was made with."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return None
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        token, key = parts.get("t", ""), parts.get("k", "")
        if key != self.vapid_public_key or token.count(".") != 2:
            return None
        head, body, signature = token.split(".")
        header = json.loads(_b64url_decode(head))
        sig = _b64url_decode(signature)
        if header.get("alg") != "ES256" or len(sig) != 64:
            return None
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64url_decode(key))
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        claims: dict[str, object] = json.loads(_b64url_decode(body))
        exp = claims.get("exp")
        if claims.get("aud") != self.origin or not isinstance(exp, int):
            return None
        if not time.time() < exp <= time.time() + 24 * 3600:
            return None
        return claims

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real push services

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                content = self.rfile.read(length)
                seen = Seen(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address[1]
                )
                with service._lock:
                    service.seen.append(seen)
                device = service.devices.get(self.path)
                status, extra = service.answers.get(self.path, (404, {}))
                seen.claims = service.verify_vapid(self.headers.get("Authorization", ""))
                if device is not None and seen.claims is None:
                    status, extra = 401, {}
                elif device is not None and status < 300:
                    seen.plaintext = http_ece.decrypt(
                        content, private_key=device.private_key, auth_secret=device.auth, version="aes128gcm"
                    )
                    extra = {"Location": f"{service.origin}/m/{uuid.uuid4().hex}", **extra}
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output stays quiet

        return Handler


@pytest.fixture(scope="module")
def vapid() -> dict[str, str]:
    keys = generate_vapid_keys()
    return {"private": keys.private_key, "public": keys.public_key}


@pytest.fixture
def service(vapid: dict[str, str]) -> Iterator[PushService]:
    with PushService(vapid["public"]) as running:
        yield running


@pytest.fixture
def channel(vapid: dict[str, str]) -> Iterator[WebPushChannel]:
    config = WebPushConfig(vapid["private"], SUBJECT, ttl=3600, urgency="normal", timeout=5, allow_http=True)
    built = WebPushChannel("push-test", config)
    yield built
    built.close()


def _message(to: str, key: str | None = None, **kwargs: object) -> Outgoing:
    fields: dict[str, object] = {"title": TITLE, "language": "uk", "body": BODY}
    fields.update(kwargs)
    return Outgoing(
        idempotency_key=key or f"msg-{uuid.uuid4().hex}",
        channel="webpush",
        to=to,
        **fields,  # type: ignore[arg-type]
    )


def test_the_device_reads_exactly_what_was_sent(service: PushService, channel: WebPushChannel) -> None:
    device = service.device()
    tracking = Tracking("https://crm.bank.example/t/o/abc", "https://crm.bank.example/t/c/abc", "https://u")
    message = _message(device.subscription(service.origin), tracking=tracking)

    result = channel.send(message)

    [seen] = service.seen_at(device)
    assert isinstance(result, Accepted)
    assert result.provider == "push-test"
    assert result.provider_id.startswith(f"{service.origin}/m/")
    assert seen.claims is not None
    assert seen.claims["sub"] == SUBJECT
    assert seen.plaintext is not None
    assert json.loads(seen.plaintext) == {
        "title": TITLE,
        "body": BODY,
        "message_id": message.idempotency_key,
        "url": "https://crm.bank.example/t/c/abc",
    }
    assert seen.headers["content-encoding"] == "aes128gcm"
    assert seen.headers["ttl"] == "3600"
    assert seen.headers["urgency"] == "normal"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", seen.headers["topic"])


def test_a_retry_carries_the_same_topic_and_another_key_another(
    service: PushService, channel: WebPushChannel
) -> None:
    device = service.device()
    to = device.subscription(service.origin)

    channel.send(_message(to, key="outbox-42"))
    channel.send(_message(to, key="outbox-42"))
    channel.send(_message(to, key="outbox-43"))

    first, retry, other = service.seen_at(device)
    assert first.headers["topic"] == retry.headers["topic"] == push_topic("outbox-42")
    assert other.headers["topic"] != first.headers["topic"]
    assert first.plaintext == retry.plaintext  # the same notification, encrypted afresh


def test_the_message_can_set_ttl_urgency_and_the_link_target(
    service: PushService, channel: WebPushChannel
) -> None:
    device = service.device()
    tracking = Tracking("https://crm/o", "https://crm/c/xyz", "https://crm/u")
    extra = {"ttl": "60", "urgency": "high", "url": "https://bank.example/deposits?id=7"}

    channel.send(_message(device.subscription(service.origin), tracking=tracking, extra=extra))

    [seen] = service.seen_at(device)
    assert seen.headers["ttl"] == "60"
    assert seen.headers["urgency"] == "high"
    assert seen.plaintext is not None
    assert (
        json.loads(seen.plaintext)["url"]
        == "https://crm/c/xyz?u=https%3A%2F%2Fbank.example%2Fdeposits%3Fid%3D7"
    )


def test_one_connection_is_kept_alive_across_sends(service: PushService, channel: WebPushChannel) -> None:
    device = service.device()
    to = device.subscription(service.origin)

    for _ in range(3):
        assert isinstance(channel.send(_message(to)), Accepted)

    assert len({seen.client_port for seen in service.seen_at(device)}) == 1


def test_a_pem_vapid_key_signs_as_well(service: PushService, vapid: dict[str, str]) -> None:
    pem = load_vapid_key(vapid["private"]).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    config = WebPushConfig(pem.decode(), SUBJECT, allow_http=True)
    device = service.device()
    pem_channel = WebPushChannel("push-pem", config)
    try:
        result = pem_channel.send(_message(device.subscription(service.origin)))
    finally:
        pem_channel.close()

    assert isinstance(result, Accepted)
    assert pem_channel.application_server_key == vapid["public"]
    assert service.seen_at(device)[0].plaintext is not None


def test_a_foreign_vapid_key_is_refused_by_the_push_service(service: PushService) -> None:
    config = WebPushConfig(generate_vapid_keys().private_key, SUBJECT, allow_http=True)
    device = service.device()
    stranger = WebPushChannel("push-stranger", config)
    try:
        result = stranger.send(_message(device.subscription(service.origin)))
    finally:
        stranger.close()

    [seen] = service.seen_at(device)
    assert seen.claims is None
    assert seen.plaintext is None
    assert isinstance(result, Permanent)
    assert not result.gone
    assert "401" in result.reason


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_is_permanent_and_gone(
    service: PushService, channel: WebPushChannel, status: int
) -> None:
    device = service.device(answer=status)

    result = channel.send(_message(device.subscription(service.origin)))

    assert isinstance(result, Permanent)
    assert result.gone
    assert str(status) in result.reason
    assert len(service.seen_at(device)) == 1


@pytest.mark.parametrize("status", [400, 403, 413])
def test_other_refusals_are_permanent_but_keep_the_subscription(
    service: PushService, channel: WebPushChannel, status: int
) -> None:
    device = service.device(answer=status)

    result = channel.send(_message(device.subscription(service.origin)))

    assert isinstance(result, Permanent)
    assert not result.gone
    assert str(status) in result.reason


def test_throttling_is_transient_with_the_retry_after(service: PushService, channel: WebPushChannel) -> None:
    device = service.device(answer=429, headers={"Retry-After": "37"})

    result = channel.send(_message(device.subscription(service.origin)))

    assert isinstance(result, Transient)
    assert result.retry_after == 37.0
    assert "429" in result.reason


def test_a_server_error_is_transient(service: PushService, channel: WebPushChannel) -> None:
    device = service.device(answer=503)

    result = channel.send(_message(device.subscription(service.origin)))

    assert isinstance(result, Transient)
    assert result.retry_after is None
    assert len(service.seen_at(device)) == 1


def test_a_push_service_that_is_down_is_transient(channel: WebPushChannel) -> None:
    with socket.socket() as bound:  # bound, never listening: the connection is refused
        bound.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{bound.getsockname()[1]}"
        device = Device("/push/down")

        result = channel.send(_message(device.subscription(origin)))

    assert isinstance(result, Transient)
    assert "127.0.0.1" not in result.reason  # the endpoint identifies a device


def test_a_payload_over_4_kb_is_refused_before_any_request(
    service: PushService, channel: WebPushChannel
) -> None:
    device = service.device()
    body = "🏦" * 1000  # within max_body characters, but 4 bytes each in UTF-8

    result = channel.send(_message(device.subscription(service.origin), body=body))

    assert isinstance(result, Permanent)
    assert not result.gone
    assert "4096" in result.reason
    assert service.seen == []


def test_the_longest_cyrillic_title_and_body_still_fit(service: PushService, channel: WebPushChannel) -> None:
    device = service.device()
    title, body = "Ж" * WebPushChannel.max_title, "Ї" * WebPushChannel.max_body  # type: ignore[operator]
    tracking = Tracking("https://crm/o", "https://crm.bank.example/t/c/" + "x" * 200, "https://crm/u")

    result = channel.send(
        _message(device.subscription(service.origin), title=title, body=body, tracking=tracking)
    )

    assert isinstance(result, Accepted)
    [seen] = service.seen_at(device)
    assert seen.plaintext is not None
    assert json.loads(seen.plaintext)["body"] == body


@pytest.mark.parametrize(
    "to",
    [
        "not json",
        json.dumps({"endpoint": "https://push.example/x"}),
        json.dumps(
            {
                "endpoint": "https://push.example/x",
                "keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
            }
        ),
    ],
)
def test_a_broken_subscription_is_permanent_without_a_request(
    service: PushService, channel: WebPushChannel, to: str
) -> None:
    result = channel.send(_message(to))

    assert isinstance(result, Permanent)
    assert "subscription" in result.reason
    assert service.seen == []


def test_a_plain_http_endpoint_is_refused_unless_allowed(service: PushService, vapid: dict[str, str]) -> None:
    device = service.device()
    strict = WebPushChannel("push-strict", WebPushConfig(vapid["private"], SUBJECT))
    try:
        result = strict.send(_message(device.subscription(service.origin)))
    finally:
        strict.close()

    assert isinstance(result, Permanent)
    assert "https" in result.reason
    assert service.seen == []


def test_generated_keys_are_a_p256_pair() -> None:
    keys = generate_vapid_keys()
    private = load_vapid_key(keys.private_key)
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    assert _b64url(point) == keys.public_key
    assert len(_b64url_decode(keys.public_key)) == 65
    assert keys.private_key not in repr(keys)


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("vapid_subject", "bank.example"), ("urgency", "urgent"), ("ttl", -1), ("timeout", 0)],
)
def test_the_config_refuses_what_a_push_service_would(field_name: str, value: object) -> None:
    args: dict[str, object] = {"vapid_private_key": "x", "vapid_subject": SUBJECT, field_name: value}
    with pytest.raises(ValueError, match=r"."):
        WebPushConfig(**args)  # type: ignore[arg-type]


def test_a_subscription_in_standard_base64_is_delivered(
    service: PushService, channel: WebPushChannel
) -> None:
    device = service.device()
    keys = json.loads(device.subscription(service.origin))["keys"]
    padded = {k: base64.b64encode(_b64url_decode(v)).decode() for k, v in keys.items()}  # "+/" and "="
    stored = Subscription(service.origin + device.path, padded["p256dh"], padded["auth"])

    result = channel.send(_message(stored.to_json()))

    assert isinstance(result, Accepted)
    [seen] = service.seen_at(device)
    assert seen.plaintext is not None
    assert json.loads(seen.plaintext)["body"] == BODY


NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 02 Dec 2026 12:01:30 GMT", 90.0),
        ("Wed, 02 Dec 2026 11:59:00 GMT", 0.0),  # already past: retry now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("²", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds
