"""The published JSON Schema of a scenario template never drifts from the code, and the shipped files fit.

scenarios/schema/scenario.schema.json is what `omnicrm scenarios schema --out ...` writes; every shipped
template is validated against it with `jsonschema` (a dev dependency) and with ScenarioSpec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from omnicrm.domain.scenarios import ScenarioSpec
from omnicrm.services.conversations.registry import scenario_schema
from omnicrm.settings import SHIPPED_SCENARIOS

SCHEMA_FILE = SHIPPED_SCENARIOS / "schema" / "scenario.schema.json"
TEMPLATES = sorted((SHIPPED_SCENARIOS / "templates").glob("*.yaml"))
LOAN = SHIPPED_SCENARIOS / "templates" / "loan-application-reminder.yaml"


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def validator(published: dict[str, Any]) -> Any:
    jsonschema.Draft202012Validator.check_schema(published)
    return jsonschema.Draft202012Validator(published)


def messages(validator: Any, data: Any) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data))


def test_the_published_schema_is_what_the_code_generates(published: dict[str, Any]) -> None:
    assert published == scenario_schema(), (
        "scenarios/schema/scenario.schema.json is stale: "
        "run `omnicrm scenarios schema --out src/omnicrm/data/scenarios/schema/scenario.schema.json`"
    )


def test_the_published_schema_file_is_written_the_way_the_cli_writes_it() -> None:
    expected = json.dumps(scenario_schema(), indent=2, ensure_ascii=False) + "\n"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == expected


def test_the_published_schema_describes_a_template(published: dict[str, Any]) -> None:
    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert published["$id"] == "https://omnicrm.example/schemas/scenario.schema.json"
    assert (published["type"], published["additionalProperties"]) == ("object", False)
    assert set(published["properties"]) == set(ScenarioSpec.model_fields)
    assert published["properties"]["version"] == {"minimum": 1, "title": "Version", "type": "integer"}
    assert published["properties"]["migrate_from"]["items"] == {"type": "integer"}
    assert "migrate_from" not in published["required"]
    assert {"id", "version", "name", "purpose", "trigger", "goal", "reentry", "start", "steps"} <= set(
        published["required"]
    )


def test_there_are_42_shipped_templates() -> None:
    assert len(TEMPLATES) == 42


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_every_shipped_template_validates_against_the_published_schema(path: Path, validator: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert messages(validator, data) == []
    spec = ScenarioSpec.model_validate(data)
    assert spec.id == path.stem


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": 0}, "version: 0 is less than the minimum of 1"),
        ({"colour": "red"}, ": Additional properties are not allowed ('colour' was unexpected)"),
        ({"purpose": "spam"}, "purpose: 'spam' is not one of"),
        ({"migrate_from": ["one"]}, "migrate_from.0: 'one' is not of type 'integer'"),
        ({"id": "Loan Reminder"}, "id: 'Loan Reminder' does not match"),
    ],
    ids=["version-zero", "unknown-key", "unknown-purpose", "migrate-from-text", "bad-id"],
)
def test_the_schema_refuses_a_broken_template(validator: Any, change: dict[str, Any], expected: str) -> None:
    data = {**yaml.safe_load(LOAN.read_text(encoding="utf-8")), **change}

    found = messages(validator, data)

    assert len(found) == 1, found
    assert found[0].startswith(expected), found
