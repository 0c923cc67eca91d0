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
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization

from omnicrm.bench.push_peer import Device, PushService
from omnicrm.bench.push_peer import b64url as _b64url
from omnicrm.bench.push_peer import b64url_decode as _b64url_decode
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


@pytest.fixture(scope="module")
def vapid() -> dict[str, str]:
    keys = generate_vapid_keys()
    return {"private": keys.private_key, "public": keys.public_key}


@pytest.fixture
def service(vapid: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[PushService]:
    with PushService(vapid["public"]) as running:
        monkeypatch.setenv("SSL_CERT_FILE", str(running.ca_file))  # how a bank trusts its own CA too
        yield running


@pytest.fixture
def channel(vapid: dict[str, str], service: PushService) -> Iterator[WebPushChannel]:
    config = WebPushConfig(vapid["private"], SUBJECT, ttl=3600, urgency="normal", timeout=5)
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
    config = WebPushConfig(pem.decode(), SUBJECT)
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
    config = WebPushConfig(generate_vapid_keys().private_key, SUBJECT)
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
        origin = f"https://127.0.0.1:{bound.getsockname()[1]}"
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


def test_a_plain_http_endpoint_is_refused_without_a_request(
    service: PushService, channel: WebPushChannel
) -> None:
    device = service.device()
    plain = service.origin.replace("https://", "http://")

    result = channel.send(_message(device.subscription(plain)))

    assert isinstance(result, Permanent)
    assert "https" in result.reason
    assert service.seen == []


def test_a_push_service_with_an_untrusted_certificate_gets_nothing(
    service: PushService, vapid: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # only the public CAs: the test service's certificate is not one
    device = service.device()
    doubtful = WebPushChannel("push-doubtful", WebPushConfig(vapid["private"], SUBJECT, timeout=5))
    try:
        result = doubtful.send(_message(device.subscription(service.origin)))
    finally:
        doubtful.close()

    assert isinstance(result, Transient)
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
