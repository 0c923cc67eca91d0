"""docs/asyncapi.yaml is the contract other teams build on: it must say what the code does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
import yaml

from omnicrm.bridge.envelope import STATUSES, from_event_json, status_event

DOC = Path(__file__).parents[3] / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({**doc, "$ref": f"#/components/schemas/{name}"})


def test_it_is_asyncapi_3_and_every_reference_resolves(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    found = list(refs(doc))
    assert len(found) > 30
    for ref in found:
        assert ref.startswith("#/")
        resolve(doc, ref)  # KeyError names a dangling reference
    assert set(doc["components"]["parameters"]["status"]["enum"]) == STATUSES
    assert set(doc["components"]["schemas"]["Status"]["enum"]) == STATUSES


def test_the_status_events_omnicrm_publishes_match_the_schema(doc: dict[str, Any]) -> None:
    check = validator(doc, "StatusCloudEvent")
    for status in sorted(STATUSES):
        event = status_event(
            event_id=f"e-{status}",
            customer_id="C000123",
            message_id="M9",
            status=status,
            occurred_at=datetime(2026, 12, 1, 10, tzinfo=UTC),
            channel="email",
            provider="smtp-main",
            attempt=2,
        )
        check.validate(orjson.loads(event.to_json()))
    for example in doc["components"]["messages"]["StatusEvent"]["examples"]:
        check.validate(example["payload"])


def test_the_bank_events_omnicrm_takes_match_the_schema(doc: dict[str, Any]) -> None:
    check = validator(doc, "BankCloudEvent")
    event = from_event_json(
        {
            "event_id": "cbs-1",
            "type": "product.opened",
            "occurred_at": "2026-11-30T09:00:00+02:00",
            "identifiers": {"cbs_id": "CB1"},
            "attributes": {"product_class": "deposit", "contract_number": "D-1"},
        },
        source_uri="/core-banking",
        type_prefix="ua.bank.",
        extensions={"traceparent": "00-abc-01"},
    )
    check.validate(orjson.loads(event.to_json()))
    for example in doc["components"]["messages"]["BankEvent"]["examples"]:
        check.validate(example["payload"])


@pytest.mark.parametrize(
    "change",
    [
        {"specversion": "0.3"},
        {"data_base64": "AAAA"},
        {"Trace": "x"},
        {"data": {"identifiers": {}, "name": "Олена"}},
    ],
)
def test_the_schema_refuses_what_the_code_refuses(doc: dict[str, Any], change: dict[str, Any]) -> None:
    example = doc["components"]["messages"]["BankEvent"]["examples"][0]["payload"]
    assert not validator(doc, "BankCloudEvent").is_valid({**example, **change})
