"""The event catalogue: the real file compiles, bad specs are refused, attributes are cleaned."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from omnicrm.domain.catalogue import Catalogue, EventType, ProductEffect, compile_catalogue
from omnicrm.domain.errors import ItemError
from omnicrm.domain.vocabulary import PRODUCT_CLASSES, PRODUCT_STATES
from omnicrm.settings import SHIPPED_CATALOGUE

CATALOGUE_FILE = SHIPPED_CATALOGUE


@pytest.fixture(scope="module")
def real_data() -> dict[str, Any]:
    data = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def real(real_data: dict[str, Any]) -> Catalogue:
    return compile_catalogue(real_data)


def spec(**types: dict[str, Any]) -> dict[str, Any]:
    """A catalogue document with the given types (or one minimal valid type)."""
    return {"version": 1, "types": types or {"demo.happened": {"kind": "behavioural", "description": "d"}}}


def one_type(attributes: dict[str, Any], product: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "operational", "description": "demo", "attributes": attributes}
    if product is not None:
        body["product"] = product
    return spec(**{"demo.happened": body})


# ------------------------------------------------------------------ the real catalogue


def test_real_catalogue_compiles(real: Catalogue) -> None:
    assert real.version >= 1
    assert len(real.types) >= 20
    assert {t.kind for t in real.types.values()} == {"behavioural", "operational", "interaction", "reaction"}


def test_real_catalogue_lookup_and_names(real: Catalogue) -> None:
    opened = real.get("product.opened")
    assert isinstance(opened, EventType)
    assert opened.kind == "operational"
    assert real.get("no.such.type") is None
    assert real.names() == sorted(real.types)
    interactions = real.names("interaction")
    assert interactions
    assert all(n.startswith("crm.") for n in interactions)
    assert set(real.names("behavioural", "reaction")).isdisjoint(real.names("operational"))


def test_real_catalogue_product_effects_are_coherent(real: Catalogue, real_data: dict[str, Any]) -> None:
    """Every product effect names required attributes and a state its class(es) can be in."""
    for name, event_type in real.types.items():
        effect = event_type.product
        if effect is None:
            continue
        attrs = real_data["types"][name]["attributes"]
        assert attrs[effect.contract_from]["required"] is True, name
        if effect.product_class is not None:
            classes = [effect.product_class]
        else:
            assert effect.class_from is not None
            source = attrs[effect.class_from]
            assert source["type"] == "enum", name
            assert source["required"] is True, name
            classes = source["values"]
        for cls in classes:
            assert cls in PRODUCT_CLASSES, (name, cls)
            assert effect.state in PRODUCT_STATES[cls], (name, cls, effect.state)


def test_product_effect_target(real: Catalogue) -> None:
    opened = real.get("product.opened")
    issued = real.get("card.issued")
    assert opened is not None
    assert opened.product is not None
    assert issued is not None
    assert issued.product is not None
    assert opened.product.target({"product_class": "deposit", "contract_number": "D-1"}) == (
        "deposit",
        "D-1",
        "active",
    )
    assert issued.product.target({"contract_number": "C-9", "card_type": "debit"}) == (
        "card",
        "C-9",
        "issued",
    )


def test_product_effect_target_stringifies_values() -> None:
    effect = ProductEffect(None, "cls", "contract", "closed")
    assert effect.target({"cls": "card", "contract": 12345}) == ("card", "12345", "closed")


# ------------------------------------------------------------------ refused specs


BAD_SPECS: list[tuple[str, object]] = [
    ("enum without values", one_type({"colour": {"type": "enum"}})),
    ("enum with empty values", one_type({"colour": {"type": "enum", "values": []}})),
    ("values on a string", one_type({"colour": {"type": "string", "values": ["a"]}})),
    ("min on a string", one_type({"note": {"type": "string", "min": 1}})),
    ("max on a date", one_type({"day": {"type": "date", "max": 5}})),
    ("unknown attribute type", one_type({"amount": {"type": "money"}})),
    ("max_length out of range", one_type({"note": {"type": "string", "max_length": 0}})),
    ("unknown attribute option", one_type({"note": {"type": "string", "pattern": "x"}})),
    (
        "effect refers to undeclared contract attribute",
        one_type(
            {"contract_number": {"type": "string"}},
            {"class": "card", "contract_from": "nope", "state": "active"},
        ),
    ),
    (
        "effect refers to undeclared class attribute",
        one_type(
            {"contract_number": {"type": "string"}},
            {"class_from": "product_class", "contract_from": "contract_number", "state": "active"},
        ),
    ),
    (
        "unknown lifecycle state for the class",
        one_type({"c": {"type": "string"}}, {"class": "card", "contract_from": "c", "state": "maturing"}),
    ),
    (
        "state of no class at all",
        one_type(
            {"c": {"type": "string"}, "k": {"type": "string"}},
            {"class_from": "k", "contract_from": "c", "state": "exploded"},
        ),
    ),
    (
        "unknown product class",
        one_type({"c": {"type": "string"}}, {"class": "boat", "contract_from": "c", "state": "active"}),
    ),
    (
        "both class and class_from",
        one_type(
            {"c": {"type": "string"}, "k": {"type": "string"}},
            {"class": "card", "class_from": "k", "contract_from": "c", "state": "active"},
        ),
    ),
    (
        "neither class nor class_from",
        one_type({"c": {"type": "string"}}, {"contract_from": "c", "state": "active"}),
    ),
    ("effect without contract_from", one_type({}, {"class": "card", "state": "active"})),
    ("type name without a dot", spec(registration={"kind": "behavioural", "description": "d"})),
    (
        "type name in capitals",
        spec(**{"Registration.Attempted": {"kind": "behavioural", "description": "d"}}),
    ),
    ("type name with a dash", spec(**{"registration.re-try": {"kind": "behavioural", "description": "d"}})),
    ("attribute name not snake_case", one_type({"ContractNumber": {"type": "string"}})),
    ("attribute name too long", one_type({"a" * 65: {"type": "string"}})),
    ("unknown kind", spec(**{"demo.happened": {"kind": "telepathic", "description": "d"}})),
    ("empty description", spec(**{"demo.happened": {"kind": "behavioural", "description": ""}})),
    ("missing description", spec(**{"demo.happened": {"kind": "behavioural"}})),
    ("extra field on a type", spec(**{"demo.happened": {"kind": "behavioural", "description": "d", "x": 1}})),
    ("version 0", {"version": 0, "types": {}}),
    ("no version", {"types": {}}),
    ("extra top-level field", {"version": 1, "types": {}, "owner": "me"}),
    ("not a mapping", ["version", 1]),
    ("empty document", None),
]


@pytest.mark.parametrize("data", [d for _, d in BAD_SPECS], ids=[n for n, _ in BAD_SPECS])
def test_bad_specs_are_refused(data: object) -> None:
    with pytest.raises(ValidationError):
        compile_catalogue(data)


def test_refusal_names_the_problem() -> None:
    bad = one_type({"c": {"type": "string"}}, {"class": "card", "contract_from": "nope", "state": "active"})
    with pytest.raises(ValidationError, match="undeclared attribute 'nope'"):
        compile_catalogue(bad)
    with pytest.raises(ValidationError, match="must be dotted lower-case words"):
        compile_catalogue(spec(Bad={"kind": "behavioural", "description": "d"}))


def test_bad_real_catalogue_mutation_is_refused(real_data: dict[str, Any]) -> None:
    data = copy.deepcopy(real_data)
    data["types"]["card.issued"]["product"]["state"] = "renewed"
    with pytest.raises(ValidationError):
        compile_catalogue(data)


def test_effect_with_class_from_compiles() -> None:
    catalogue = compile_catalogue(
        one_type(
            {
                "k": {"type": "enum", "values": ["card", "deposit"], "required": True},
                "c": {"type": "string", "required": True, "max_length": 64},
            },
            {"class_from": "k", "contract_from": "c", "state": "closed"},
        )
    )
    demo = catalogue.get("demo.happened")
    assert demo is not None
    assert demo.product == ProductEffect(None, "k", "c", "closed")


def test_effect_on_optional_attribute_is_refused() -> None:
    data = one_type(
        {"contract_number": {"type": "string"}},
        {"class": "card", "contract_from": "contract_number", "state": "active"},
    )
    with pytest.raises(ValidationError):
        compile_catalogue(data)


# ------------------------------------------------------------------ cleaning attributes

ALL_TYPES = one_type(
    {
        "note": {"type": "string", "max_length": 5},
        "code": {"type": "string", "required": True},
        "count": {"type": "integer", "min": 1, "max": 10},
        "ratio": {"type": "number", "min": 0},
        "flag": {"type": "boolean"},
        "day": {"type": "date"},
        "moment": {"type": "datetime"},
        "colour": {"type": "enum", "values": ["red", "green"]},
    }
)


@pytest.fixture(scope="module")
def demo() -> EventType:
    event_type = compile_catalogue(ALL_TYPES).get("demo.happened")
    assert event_type is not None
    return event_type


def test_clean_returns_json_ready_values(demo: EventType) -> None:
    cleaned = demo.clean(
        {
            "note": "hi",
            "code": "X1",
            "count": 3,
            "ratio": 2,
            "flag": True,
            "day": dt.date(2026, 1, 31),
            "moment": dt.datetime(2026, 1, 31, 10, 0, tzinfo=dt.UTC),
            "colour": "red",
        }
    )
    assert cleaned == {
        "note": "hi",
        "code": "X1",
        "count": 3,
        "ratio": 2.0,
        "flag": True,
        "day": "2026-01-31",
        "moment": "2026-01-31T10:00:00Z",
        "colour": "red",
    }


def test_clean_accepts_iso_strings_and_omits_absent_values(demo: EventType) -> None:
    cleaned = demo.clean(
        {"code": "X1", "day": "2026-02-01", "moment": "2026-02-01T12:00:00+02:00", "note": None}
    )
    assert cleaned == {"code": "X1", "day": "2026-02-01", "moment": "2026-02-01T12:00:00+02:00"}


def errors_of(result: dict[str, Any] | list[ItemError]) -> dict[str, str]:
    assert isinstance(result, list), result
    return {e.field: e.reason for e in result}


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({}, "attributes.code"),
        ({"code": ""}, "attributes.code"),
        ({"code": "X", "note": "toolong"}, "attributes.note"),
        ({"code": "X", "count": 0}, "attributes.count"),
        ({"code": "X", "count": 11}, "attributes.count"),
        ({"code": "X", "count": "many"}, "attributes.count"),
        ({"code": "X", "count": 2.5}, "attributes.count"),
        ({"code": "X", "ratio": -0.1}, "attributes.ratio"),
        ({"code": "X", "flag": "perhaps"}, "attributes.flag"),
        ({"code": "X", "day": "31.01.2026"}, "attributes.day"),
        ({"code": "X", "moment": "2026-01-31T10:00:00"}, "attributes.moment"),  # naive
        ({"code": "X", "moment": dt.datetime(2026, 1, 31, 10, 0)}, "attributes.moment"),  # naive
        ({"code": "X", "colour": "blue"}, "attributes.colour"),
        ({"code": "X", "shape": "round"}, "attributes.shape"),
    ],
)
def test_clean_refuses_bad_values(demo: EventType, attributes: dict[str, Any], field: str) -> None:
    assert field in errors_of(demo.clean(attributes))


def test_clean_lists_every_error_with_the_item_index(demo: EventType) -> None:
    result = demo.clean({"count": 0, "colour": "blue", "shape": "round"}, index=7)
    assert isinstance(result, list)
    assert {e.field for e in result} == {
        "attributes.code",
        "attributes.count",
        "attributes.colour",
        "attributes.shape",
    }
    assert all(isinstance(e, ItemError) and e.index == 7 for e in result)
    assert all(e.reason for e in result)


def test_clean_without_index(demo: EventType) -> None:
    result = demo.clean({})
    assert isinstance(result, list)
    assert [e.index for e in result] == [None]


def test_clean_on_the_real_catalogue(real: Catalogue) -> None:
    opened = real.get("product.opened")
    assert opened is not None
    assert opened.clean(
        {"product_class": "deposit", "contract_number": "D-1", "maturity_date": "2027-01-01", "amount": 5}
    ) == {"product_class": "deposit", "contract_number": "D-1", "amount": 5.0, "maturity_date": "2027-01-01"}
    errors = errors_of(opened.clean({"product_class": "boat", "amount": -1}))
    assert set(errors) == {"attributes.product_class", "attributes.contract_number", "attributes.amount"}
