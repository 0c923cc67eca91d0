"""Validation of an event batch before anything is written (`prepare`, `prepare_one`): no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml

from omnicrm.domain.catalogue import Catalogue, compile_catalogue
from omnicrm.domain.errors import CardNumberRefused, InvalidInput, ItemError
from omnicrm.services.intake.ingest import EVENT_KINDS, INTERACTION_KINDS, Prepared, prepare, prepare_one
from omnicrm.settings import SHIPPED_CATALOGUE

VISA = "4111111111111111"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return compile_catalogue(yaml.safe_load((SHIPPED_CATALOGUE).read_text(encoding="utf-8")))


def event(**overrides: Any) -> dict[str, Any]:
    """A valid operational event; keyword arguments replace (or, with None, drop) envelope fields."""
    raw: dict[str, Any] = {
        "event_id": "evt-1",
        "type": "product.opened",
        "occurred_at": "2026-11-20T10:00:00+02:00",
        "source": "core_banking",
        "identifiers": {"phone": "067 123 45 67"},
        "attributes": {"product_class": "deposit", "contract_number": "DEP-1", "maturity_date": "2027-11-20"},
    }
    for key, value in overrides.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def call(**overrides: Any) -> dict[str, Any]:
    """A valid CRM interaction; keyword arguments as for `event`."""
    fields: dict[str, Any] = {
        "event_id": "call-1",
        "type": "crm.call.completed",
        "source": "call_centre",
        "channel": "callcentre",
        "attributes": {"direction": "inbound", "disposition": "resolved", "duration_s": 60},
    }
    return event(**{**fields, **overrides})


def refused(items: list[object], catalogue: Catalogue, kinds: frozenset[str] = EVENT_KINDS) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        prepare(items, catalogue, kinds)
    return info.value


def triples(exc: InvalidInput) -> set[tuple[int | None, str]]:
    return {(e.index, e.field) for e in exc.errors}


def test_valid_event_is_prepared(catalogue: Catalogue) -> None:
    result = prepare_one(event(channel="core"), 0, catalogue, EVENT_KINDS)
    assert isinstance(result, Prepared)
    assert result.event_id == "evt-1"
    assert result.type == "product.opened"
    assert result.kind == "operational"
    assert result.source == "core_banking"
    assert result.channel == "core"
    assert result.occurred_at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert result.occurred_at.utcoffset() == timedelta(hours=2)
    assert result.customer_id is None
    assert result.pairs == (("phone", "+380671234567"),)
    assert result.attributes == {
        "product_class": "deposit",
        "contract_number": "DEP-1",
        "maturity_date": "2027-11-20",
    }
    assert result.effect is not None
    assert result.effect.target(result.attributes) == ("deposit", "DEP-1", "active")


def test_every_identifier_is_normalised(catalogue: Catalogue) -> None:
    raw = event(
        identifiers={
            "phone": "+38 (067) 123-45-67",
            "email": " Olena@Example.COM ",
            "account": "ua21 3223 1300 0002 6007 2335 6600 1",
            "cbs_id": " CBS-42 ",
        }
    )
    result = prepare_one(raw, 0, catalogue, EVENT_KINDS)
    assert isinstance(result, Prepared)
    assert dict(result.pairs) == {
        "phone": "+380671234567",
        "email": "olena@example.com",
        "account": "UA213223130000026007233566001",
        "cbs_id": "CBS-42",
    }


def test_customer_id_alone_is_enough(catalogue: Catalogue) -> None:
    result = prepare_one(event(identifiers=None, customer_id="01JCUSTOMER"), 0, catalogue, EVENT_KINDS)
    assert isinstance(result, Prepared)
    assert result.customer_id == "01JCUSTOMER"
    assert result.pairs == ()


def test_valid_batch_keeps_its_order(catalogue: Catalogue) -> None:
    items: list[object] = [event(event_id=f"e-{i}") for i in range(5)]
    prepared = prepare(items, catalogue, EVENT_KINDS)
    assert [p.event_id for p in prepared] == [f"e-{i}" for i in range(5)]


def test_empty_batch_is_fine(catalogue: Catalogue) -> None:
    assert prepare([], catalogue, EVENT_KINDS) == []


def test_every_bad_item_is_listed(catalogue: Catalogue) -> None:
    items: list[object] = [
        event(event_id="ok-0"),
        event(  # index 1: two attribute errors and two identifier errors
            event_id="bad-1",
            attributes={"product_class": "boat", "amount": -5},
            identifiers={"phone": "12345", "email": "not-an-email"},
        ),
        event(event_id="ok-2"),
        event(event_id="bad-3", occurred_at="2026-11-20T10:00:00"),  # naive
        event(event_id="bad-4", identifiers=None),
        event(event_id="ok-5"),
    ]
    exc = refused(items, catalogue)
    assert type(exc) is InvalidInput
    assert triples(exc) == {
        (1, "attributes.product_class"),
        (1, "attributes.contract_number"),
        (1, "attributes.amount"),
        (1, "identifiers.phone"),
        (1, "identifiers.email"),
        (3, "occurred_at"),
        (4, "identifiers"),
    }
    assert all(isinstance(e, ItemError) and e.reason for e in exc.errors)
    assert exc.detail == "3 of 6 items are invalid; nothing was written"
    assert exc.code == "invalid_input"
    assert {e["index"] for e in (x.as_dict() for x in exc.errors)} == {1, 3, 4}


def test_missing_identifiers_and_customer_id(catalogue: Catalogue) -> None:
    for raw in (event(identifiers=None), event(identifiers={})):
        assert prepare_one(raw, 3, catalogue, EVENT_KINDS) == [
            ItemError(3, "identifiers", "give at least one identifier or a customer_id")
        ]


@pytest.mark.parametrize(
    "occurred_at",
    ["2026-11-20T10:00:00", "2026-11-20 10:00:00", datetime(2026, 11, 20, 10, 0)],
)
def test_naive_datetime_is_refused(catalogue: Catalogue, occurred_at: object) -> None:
    errors = prepare_one(event(occurred_at=occurred_at), 0, catalogue, EVENT_KINDS)
    assert isinstance(errors, list)
    assert [e.field for e in errors] == ["occurred_at"]
    assert "timezone" in errors[0].reason


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-20T10:00:00Z",
        "2026-11-20T10:00:00.123+02:00",
        datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_aware_datetime_is_accepted(catalogue: Catalogue, occurred_at: object) -> None:
    assert isinstance(prepare_one(event(occurred_at=occurred_at), 0, catalogue, EVENT_KINDS), Prepared)


@pytest.mark.parametrize("type_name", ["no.such.type", "product.openedd", "Product.Opened"])
def test_unknown_type_is_refused(catalogue: Catalogue, type_name: str) -> None:
    errors = prepare_one(event(type=type_name), 2, catalogue, EVENT_KINDS)
    assert isinstance(errors, list)
    [error] = errors
    assert (error.index, error.field) == (2, "type")
    assert repr(type_name) in error.reason
    assert "product.opened" in error.reason or "e.g." in error.reason


def test_interaction_is_refused_as_an_event(catalogue: Catalogue) -> None:
    errors = prepare_one(call(), 0, catalogue, EVENT_KINDS)
    assert isinstance(errors, list)
    [error] = errors
    assert error.field == "type"
    assert "'crm.call.completed'" in error.reason
    assert "behavioural/operational/reaction" in error.reason


def test_event_is_refused_as_an_interaction(catalogue: Catalogue) -> None:
    errors = prepare_one(event(), 0, catalogue, INTERACTION_KINDS)
    assert isinstance(errors, list)
    assert [e.field for e in errors] == ["type"]
    assert "crm." in errors[0].reason  # the examples are interaction types


def test_interaction_is_prepared_with_interaction_kinds(catalogue: Catalogue) -> None:
    result = prepare_one(call(), 0, catalogue, INTERACTION_KINDS)
    assert isinstance(result, Prepared)
    assert result.kind == "interaction"
    assert result.effect is None


def test_kinds_sets_are_disjoint_and_cover_the_catalogue(catalogue: Catalogue) -> None:
    assert EVENT_KINDS.isdisjoint(INTERACTION_KINDS)
    assert {t.kind for t in catalogue.types.values()} <= EVENT_KINDS | INTERACTION_KINDS


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (event(attributes={"product_class": "card", "contract_number": VISA}), "attributes.contract_number"),
        (
            event(attributes={"product_class": "card", "contract_number": "4111 1111 1111 1111"}),
            "attributes.contract_number",
        ),
        (event(identifiers={"cbs_id": "4111-1111-1111-1111"}), "identifiers.cbs_id"),
        (event(event_id=VISA), "event_id"),
        (event(attributes={"note": {"lines": ["hello", f"card {VISA}"]}}), "attributes.note.lines[1]"),
        (event(attributes={VISA: "x"}), "attributes.[card number]"),
        (event(attributes={"amount": int(VISA)}), "attributes.amount"),
    ],
)
def test_card_number_anywhere_is_refused(catalogue: Catalogue, raw: dict[str, Any], path: str) -> None:
    exc = refused([event(event_id="fine"), raw], catalogue)
    assert isinstance(exc, CardNumberRefused)
    assert exc.code == "card_number_refused"
    assert triples(exc) == {(1, path)}
    assert "card number" in exc.errors[0].reason
    assert VISA not in exc.errors[0].reason  # the number itself is never echoed back


def test_card_number_refusal_wins_over_other_errors(catalogue: Catalogue) -> None:
    exc = refused([event(identifiers=None), event(attributes={"contract_number": VISA})], catalogue)
    assert isinstance(exc, CardNumberRefused)
    assert triples(exc) == {(0, "identifiers"), (1, "attributes.contract_number")}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (event(event_id=None), "event_id"),
        (event(event_id="bad id with spaces"), "event_id"),
        (event(type=None), "type"),
        (event(occurred_at=None), "occurred_at"),
        (event(occurred_at="yesterday"), "occurred_at"),
        (event(source="carrier_pigeon"), "source"),
        (event(channel="fax"), "channel"),
        (event(identifiers={"passport": "AA123456"}), "identifiers.passport.[key]"),
        (event(extra_field=1), "extra_field"),
        (event(attributes="not a mapping"), "attributes"),
    ],
)
def test_envelope_errors(catalogue: Catalogue, raw: dict[str, Any], field: str) -> None:
    errors = prepare_one(raw, 0, catalogue, EVENT_KINDS)
    assert isinstance(errors, list)
    assert field in {e.field for e in errors}


@pytest.mark.parametrize("raw", ["a string", 42, None, ["a", "list"]])
def test_non_mapping_item_is_refused(catalogue: Catalogue, raw: object) -> None:
    errors = prepare_one(raw, 5, catalogue, EVENT_KINDS)
    assert isinstance(errors, list)
    assert [(e.index, e.field) for e in errors] == [(5, "(item)")]


def test_several_errors_per_item_are_reported_together(catalogue: Catalogue) -> None:
    raw = call(
        attributes={"direction": "sideways", "duration_s": -1, "mood": "angry"},
        identifiers={"phone": "not a phone", "email": "x@"},
    )
    errors = prepare_one(raw, 0, catalogue, INTERACTION_KINDS)
    assert isinstance(errors, list)
    assert {e.field for e in errors} == {
        "attributes.direction",
        "attributes.disposition",
        "attributes.duration_s",
        "attributes.mood",
        "identifiers.phone",
        "identifiers.email",
    }
