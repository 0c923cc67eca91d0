"""The scenario library over HTTP: listing, versions, reload (published or refused), the JSON Schema, roles.

The app runs on a Container of its own (same database as the `container` fixture, on SQLite and on
PostgreSQL) whose scenarios/ directory is a copy in tmp_path, so the files can be edited like a
marketer would; the repository's scenarios/ is never touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container, publish_files
from omnicrm.domain.scenarios import ScenarioSpec
from omnicrm.services.conversations.datafiles import read_library
from omnicrm.services.conversations.registry import scenario_schema
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store.tables import library_generations, scenario_versions

Headers = dict[str, str]
Json = dict[str, Any]
SHIPPED = SHIPPED_SCENARIOS
LOAN = "loan-application-reminder"
RETIRED = "card-tariff-interest"
LIST, SCHEMA, RELOAD = "/v1/scenarios", "/v1/scenarios/schema", "/v1/scenarios:reload"


class Files:
    """The app's own scenarios/ directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def template(self, scenario_id: str = LOAN) -> Path:
        return self.dir / "templates" / f"{scenario_id}.yaml"

    def edit(self, old: str, new: str, scenario_id: str = LOAN) -> Path:
        path = self.template(scenario_id)
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new), encoding="utf-8")
        return path


def line_of(path: Path, prefix: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.startswith(prefix))


def shipped_versions() -> dict[str, int]:
    found = {}
    for path in sorted((SHIPPED / "templates").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        found[data["id"]] = data["version"]
    return found


@pytest.fixture
def files(tmp_path: Path) -> Files:
    target = tmp_path / "scenarios"
    shutil.copytree(SHIPPED, target)
    return Files(target)


@pytest.fixture
def own(container: Container, files: Files) -> Container:
    """A Container on the fixture's database reading the tmp scenarios/; generation 1 is published."""
    settings = Settings(
        database_url=container.engine.url.render_as_string(hide_password=False),
        catalogue_file=SHIPPED_CATALOGUE,
        scenarios_dir=files.dir,
        env="test",
        decide_in_process=False,
    )
    library = read_library(files.dir, container.catalogue).library
    built = Container(settings, container.engine, container.catalogue, library)
    assert publish_files(built, actor="test").generation == 1
    return built


@pytest.fixture
def api(own: Container) -> Iterator[TestClient]:
    with TestClient(create_app(own)) as test_client:
        yield test_client


@pytest.fixture
def marketer(headers_for: Callable[[str], Headers]) -> Headers:
    return headers_for("marketer")


def generations(own: Container) -> list[int]:
    with own.reader() as conn:
        query = select(library_generations.c.generation).order_by(library_generations.c.generation)
        return [int(g) for g in conn.execute(query).scalars()]


def version_rows(own: Container) -> int:
    with own.reader() as conn:
        return len(conn.execute(select(scenario_versions.c.version)).all())


def by_id(body: Json) -> dict[str, Json]:
    return {s["id"]: s for s in body["scenarios"]}


# ------------------------------------------------------------------------------------ listing


def test_marketer_lists_every_scenario_with_its_current_version(api: TestClient, marketer: Headers) -> None:
    response = api.get(LIST, headers=marketer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["generation"], body["policy_version"]) == (1, 2)
    expected = shipped_versions()
    assert len(body["scenarios"]) == len(expected) == 42
    assert {s["id"]: s["current_version"] for s in body["scenarios"]} == expected
    loan = by_id(body)[LOAN]
    assert (loan["current_version"], loan["versions"], loan["running"]) == (1, [1], {})
    assert loan["purpose"] == "commercial"
    assert loan["name"] == "Consumer loan - finish the abandoned application"
    assert [g["generation"] for g in body["generations"]] == [1]
    assert body["generations"][0]["published_by"] == "test"
    assert "policy" not in body["generations"][0]


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_other_readers_may_list(api: TestClient, headers_for: Callable[[str], Headers], role: str) -> None:
    response = api.get(LIST, headers=headers_for(role))
    assert response.status_code == 200, response.text
    assert len(response.json()["scenarios"]) == 42


# ------------------------------------------------------------------------------------ roles


def test_operator_may_neither_reload_nor_read(
    api: TestClient, own: Container, headers_for: Callable[[str], Headers], files: Files
) -> None:
    files.edit("version: 1\n", "version: 2\n")
    operator = headers_for("operator")

    reload = api.post(RELOAD, json={}, headers=operator)
    listing = api.get(LIST, headers=operator)

    assert reload.status_code == 403
    assert reload.headers["content-type"] == "application/problem+json"
    assert "scenarios:publish" in reload.json()["detail"]
    assert listing.status_code == 403
    assert generations(own) == [1]


def test_compliance_reads_but_may_not_reload(
    api: TestClient, own: Container, headers_for: Callable[[str], Headers], files: Files
) -> None:
    files.edit("version: 1\n", "version: 2\n")

    response = api.post(RELOAD, json={}, headers=headers_for("compliance"))

    assert response.status_code == 403
    assert generations(own) == [1]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", RELOAD), ("GET", LIST), ("GET", SCHEMA), ("GET", f"{LIST}/{LOAN}")],
)
def test_no_token_is_401(api: TestClient, own: Container, files: Files, method: str, path: str) -> None:
    files.edit("version: 1\n", "version: 2\n")

    response = api.request(method, path, json={} if method == "POST" else None)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert generations(own) == [1]


# ------------------------------------------------------------------------------------ reload


def test_reload_of_changed_files_publishes_a_new_generation(
    api: TestClient, own: Container, marketer: Headers, files: Files
) -> None:
    files.edit("version: 1\n", "version: 2\n")
    files.edit("    wait: 24h\n", "    wait: 12h\n")
    files.template(RETIRED).unlink()

    response = api.post(RELOAD, json={"note": "shorter first wait"}, headers=marketer)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "generation": 2,
        "changed": True,
        "added": [f"{LOAN}@2"],
        "retired": [RETIRED],
        "rolled_back": [],
        "migrated": {},
        "not_migrated": {},
    }
    assert generations(own) == [1, 2]
    with own.reader() as conn:
        row = conn.execute(select(library_generations).where(library_generations.c.generation == 2)).one()
    assert row.note == "shorter first wait"
    assert row.published_by.startswith("marketer-")

    listing = api.get(LIST, headers=marketer).json()
    assert listing["generation"] == 2
    scenarios = by_id(listing)
    assert (scenarios[LOAN]["current_version"], scenarios[LOAN]["versions"]) == (2, [1, 2])
    assert RETIRED not in scenarios
    assert len(scenarios) == 41
    assert [g["generation"] for g in listing["generations"]] == [2, 1]


def test_reload_of_unchanged_files_changes_nothing(
    api: TestClient, own: Container, marketer: Headers
) -> None:
    response = api.post(RELOAD, json={}, headers=marketer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["generation"], body["changed"], body["added"], body["retired"]) == (1, False, [], [])
    assert generations(own) == [1]


def test_reload_of_a_published_version_edited_in_place_is_422_and_generation_1_keeps_running(
    api: TestClient, own: Container, marketer: Headers, files: Files
) -> None:
    path = files.edit("    wait: 24h\n", "    wait: 12h\n")
    rows = version_rows(own)

    response = api.post(RELOAD, json={}, headers=marketer)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert "generation 1 keeps running" in body["detail"]
    (item,) = body["errors"]
    assert item["field"] == f"{path}:{line_of(path, 'version:')} version"
    assert "version 1 was already published with other content" in item["reason"]
    assert "give your change version 2" in item["reason"]

    assert generations(own) == [1]
    assert version_rows(own) == rows
    listing = api.get(LIST, headers=marketer).json()
    assert listing["generation"] == 1
    assert by_id(listing)[LOAN]["current_version"] == 1
    template = api.get(f"{LIST}/{LOAN}", headers=marketer).json()["versions"][0]["template"]
    assert template["steps"]["wait_push"]["wait"] == "24h"


def test_reload_of_broken_yaml_is_422_naming_file_and_line(
    api: TestClient, own: Container, marketer: Headers, files: Files
) -> None:
    path = files.edit("start: push\n", "start: [push\n")

    response = api.post(RELOAD, json={}, headers=marketer)

    assert response.status_code == 422, response.text
    body = response.json()
    assert "generation 1 keeps running" in body["detail"]
    ours = [e for e in body["errors"] if e["field"].startswith(f"{path}:")]
    assert ours, body["errors"]
    line = int(ours[0]["field"].removeprefix(f"{path}:"))
    assert line_of(path, "start:") <= line <= line_of(path, "start:") + 2
    assert "YAML syntax" in ours[0]["reason"]
    assert generations(own) == [1]
    assert api.get(LIST, headers=marketer).json()["generation"] == 1


def test_reload_with_a_bad_migrate_from_is_422_naming_its_line(
    api: TestClient, own: Container, marketer: Headers, files: Files
) -> None:
    files.edit("version: 1\n", "version: 2\n")
    path = files.edit("start: push\n", "migrate_from: [5]\nstart: push\n")

    response = api.post(RELOAD, json={}, headers=marketer)

    assert response.status_code == 422, response.text
    (item,) = response.json()["errors"]
    assert item["field"] == f"{path}:{line_of(path, 'migrate_from:')} migrate_from"
    assert "cannot migrate from version 5" in item["reason"]
    assert generations(own) == [1]


# ------------------------------------------------------------------------------------ one scenario


def test_one_scenario_shows_every_published_version_with_its_template(
    api: TestClient, marketer: Headers, files: Files
) -> None:
    first = api.get(f"{LIST}/{LOAN}", headers=marketer)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["id"], body["current_version"]) == (LOAN, 1)
    (v1,) = body["versions"]
    assert (v1["version"], v1["generation"], v1["published_by"]) == (1, 1, "test")
    assert v1["source"].endswith(f"templates/{LOAN}.yaml")
    shipped = yaml.safe_load((SHIPPED / "templates" / f"{LOAN}.yaml").read_text(encoding="utf-8"))
    assert v1["template"] == ScenarioSpec.model_validate(shipped).model_dump(mode="json")
    assert list(v1["template"]["steps"]) == list(shipped["steps"])  # in file order
    assert (v1["template"]["id"], v1["template"]["version"], v1["template"]["start"]) == (LOAN, 1, "push")

    files.edit("version: 1\n", "version: 2\n")
    files.edit("    wait: 24h\n", "    wait: 12h\n")
    assert api.post(RELOAD, json={}, headers=marketer).status_code == 200

    body = api.get(f"{LIST}/{LOAN}", headers=marketer).json()
    assert body["current_version"] == 2
    assert [(v["version"], v["generation"]) for v in body["versions"]] == [(1, 1), (2, 2)]
    assert [v["template"]["steps"]["wait_push"]["wait"] for v in body["versions"]] == ["24h", "12h"]


def test_a_retired_scenario_keeps_its_versions_without_a_current_one(
    api: TestClient, marketer: Headers, files: Files
) -> None:
    files.template(RETIRED).unlink()
    assert api.post(RELOAD, json={}, headers=marketer).json()["retired"] == [RETIRED]

    body = api.get(f"{LIST}/{RETIRED}", headers=marketer).json()

    assert body["current_version"] is None
    assert [v["version"] for v in body["versions"]] == [1]


def test_an_unknown_scenario_is_404(api: TestClient, marketer: Headers) -> None:
    response = api.get(f"{LIST}/no-such-scenario", headers=marketer)
    assert response.status_code == 404
    assert "no-such-scenario" in response.json()["detail"]


# ------------------------------------------------------------------------------------ schema


def test_schema_is_the_json_schema_of_a_template(api: TestClient, marketer: Headers) -> None:
    response = api.get(SCHEMA, headers=marketer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (body["type"], body["title"]) == ("object", "ScenarioSpec")
    assert body["additionalProperties"] is False
    assert {"id", "version", "migrate_from", "trigger", "goal", "start", "steps"} <= set(body["properties"])
    assert {"id", "version", "name", "purpose", "trigger", "goal", "start", "steps"} <= set(body["required"])
    assert {"StepSpec", "RouteSpec", "SendSpec"} <= set(body["$defs"])
    # The same document as the published scenarios/schema/scenario.schema.json.
    assert body["$id"] == "https://omnicrm.example/schemas/scenario.schema.json"
    assert body == scenario_schema()
