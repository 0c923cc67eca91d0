"""The CloudEvents envelope: what it takes, what it refuses (and says why without the values), and
the conversions to and from omnicrm's event JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from omnicrm.bridge.base import DONE, Invalid, judge, sort_bodies
from omnicrm.bridge.envelope import (
    CloudEvent,
    InvalidEnvelope,
    from_event_json,
    from_timeline,
    parse,
    status_event,
    to_event_json,
)
from omnicrm.services.conversations.datafiles import load_catalogue
from omnicrm.services.intake import ingest
from omnicrm.settings import SHIPPED_CATALOGUE

BANK_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "cbs-000042",
    "source": "/core-banking",
    "type": "ua.bank.product.opened",
    "time": "2026-11-30T09:00:00+02:00",
    "datacontenttype": "application/json",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "data": {
        "identifiers": {"cbs_id": "CB0000042", "phone": "+380501234567"},
        "attributes": {"product_class": "deposit", "contract_number": "D-42"},
    },
}


def body(**changes: Any) -> bytes:
    event = {**BANK_EVENT, **changes}
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def test_a_bank_event_becomes_what_post_v1_events_takes() -> None:
    event = parse(body())
    item = to_event_json(event, type_prefix="ua.bank.")
    assert item == {
        "event_id": "cbs-000042",
        "type": "product.opened",
        "occurred_at": "2026-11-30T09:00:00+02:00",
        "source": "core_banking",
        "identifiers": {"cbs_id": "CB0000042", "phone": "+380501234567"},
        "attributes": {"product_class": "deposit", "contract_number": "D-42"},
    }
    (prepared,) = ingest.prepare([item], load_catalogue(SHIPPED_CATALOGUE), ingest.EVENT_KINDS)
    assert prepared.event_id == "cbs-000042"
    assert prepared.type == "product.opened"


def test_the_conversion_round_trips() -> None:
    item = to_event_json(parse(body()), type_prefix="ua.bank.")
    again = from_event_json(item, source_uri="/core-banking", type_prefix="ua.bank.")
    assert to_event_json(parse(again.to_json()), type_prefix="ua.bank.") == item


def test_extensions_are_kept_and_serialised() -> None:
    event = parse(body())
    assert event.extensions == {"traceparent": BANK_EVENT["traceparent"]}
    out = orjson.loads(event.to_json())
    assert out["traceparent"] == BANK_EVENT["traceparent"]
    assert out["time"] == "2026-11-30T09:00:00+02:00"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "a structured CloudEvent is a JSON object"),
        (body(specversion="0.3"), "specversion: Input should be '1.0'"),
        (body(id=""), "id: String should have at least 1 character"),
        (body(id=42), "id: Input should be a valid string"),
        (body(source=None), "source: Field required"),
        (body(time="yesterday"), "time: Input should be a valid datetime"),
        (body(time="2026-11-30T09:00:00"), "time: Input should have timezone info"),
        (body(datacontenttype="text/xml"), "datacontenttype: Input should be 'application/json'"),
        (body(data_base64="AAAA"), "data_base64: binary data is not taken"),
        (body(Trace_Parent="x"), "an extension name is 1-20 lower-case letters or digits"),
        (body(partitionkey={"a": 1}), "partitionkey: an extension value is a string"),
    ],
)
def test_a_bad_envelope_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEnvelope) as refused:
        parse(raw)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"time": None}, "time: an event needs the time it happened"),
        ({"type": "com.other.product.opened"}, "type: expected a type starting with 'ua.bank.'"),
        ({"source": "/somewhere-else"}, "is not a configured bank system"),
        ({"data": {"identifiers": {}, "name": "Олена"}}, "data.name: Extra inputs are not permitted"),
        (
            {"data": {"identifiers": {"phone": 380501234567}}},
            "data.identifiers.phone: Input should be a valid",
        ),
    ],
)
def test_an_event_omnicrm_cannot_take_is_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEnvelope) as refused:
        to_event_json(parse(body(**changes)), type_prefix="ua.bank.")
    assert reason in refused.value.reason


def test_reasons_never_carry_the_values() -> None:
    secret = "+380501234567"
    for raw in (body(id=int(secret[1:])), body(data={"identifiers": {"phone": 1}, "phone": secret})):
        with pytest.raises(InvalidEnvelope) as refused:
            to_event_json(parse(raw), type_prefix="ua.bank.")
        assert secret not in refused.value.reason
        assert secret[1:] not in refused.value.reason


def test_a_status_event_names_the_customer_and_no_personal_value() -> None:
    row = {
        "event_id": "01JDX7",
        "customer_id": "C000123",
        "type": "message.reaction",
        "channel": "sms",
        "occurred_at": datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        "attributes": {
            "message_id": "M9",
            "reaction": "delivered",
            "msisdn": "+380501234567",
            "text": "Вітаємо",
        },
    }
    event = from_timeline(row)
    assert (event.type, event.subject, event.id) == ("ua.omnicrm.message.delivered", "C000123", "01JDX7")
    assert event.data == {"message_id": "M9", "status": "delivered", "channel": "sms", "final": False}
    assert b"380501234567" not in event.to_json()
    assert parse(event.to_json()) == event


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown message status"):
        status_event(
            event_id="e", customer_id="c", message_id="m", status="deliverd", occurred_at=datetime.now(UTC)
        )


def test_invalid_envelopes_and_refusals_are_dead_lettered_the_rest_handled() -> None:
    good = body()
    batch = sort_bodies([(b"nope", False), (good, True), (body(id="cbs-2"), False)])
    seen: list[CloudEvent] = []

    def handler(deliveries: list[Any]) -> list[Any]:
        seen.extend(d.event for d in deliveries)
        return [DONE, Invalid("type: refused")]

    rejected = judge(handler, batch)
    assert [e.id for e in seen] == ["cbs-000042", "cbs-2"]
    assert batch.deliveries[0].redelivered
    assert rejected[0][0] == 0
    assert rejected[0][1].startswith("not JSON")
    assert rejected[1] == (2, "type: refused")
