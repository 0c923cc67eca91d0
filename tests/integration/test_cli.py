"""The `omnicrm` command in-process (typer's CliRunner) against a temporary SQLite file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.cli import app
from omnicrm.services.access import auth
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store.tables import customers, events

CATALOGUE = SHIPPED_CATALOGUE
SCENARIOS = SHIPPED_SCENARIOS
Invoke = Callable[..., Result]


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def run(tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """run(*args, catalogue=...) -> the Result of `omnicrm <args>` with a temporary database."""
    monkeypatch.chdir(tmp_path)  # no stray .env, and nothing written into the repository
    runner = CliRunner()

    def invoke(*args: str, catalogue: Path = CATALOGUE) -> Result:
        env = {
            "OMNICRM_DATABASE_URL": database,
            "OMNICRM_CATALOGUE_FILE": str(catalogue),
            "OMNICRM_SCENARIOS_DIR": str(SCENARIOS),
        }
        return runner.invoke(app, list(args), env=env)

    return invoke


@pytest.fixture
def opened(database: str) -> Iterator[Callable[[], Container]]:
    """opened() -> a container on the CLI's database (closed at the end)."""
    built: list[Container] = []

    def make() -> Container:
        container = bootstrap(
            Settings(database_url=database, catalogue_file=CATALOGUE, scenarios_dir=SCENARIOS, env="test")
        )
        built.append(container)
        return container

    yield make
    for container in built:
        container.close()


def _flat(text: str) -> str:
    """Output without whitespace, so that rich's line wrapping cannot split what we look for."""
    return "".join(text.split())


def test_migrate_creates_the_schema_and_is_idempotent(run: Invoke, opened: Callable[[], Container]) -> None:
    first = run("migrate")
    assert first.exit_code == 0, first.output
    assert "schema at revision" in first.output
    again = run("migrate")
    assert again.exit_code == 0, again.output
    tables = set(inspect(opened().engine).get_table_names())
    assert {"customers", "identifiers", "events", "audit_log", "users", "api_tokens"} <= tables


def test_users_add_and_token_give_a_working_api_token(run: Invoke, opened: Callable[[], Container]) -> None:
    added = run("users", "add", "x", "--role", "integration")
    assert added.exit_code == 0, added.output
    issued = run("users", "token", "x")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("ocrm_")

    container = opened()
    with container.reader() as conn:
        principal = auth.authenticate(conn, token, datetime.now(UTC))
    assert principal is not None
    assert (principal.username, principal.role) == ("x", "integration")
    with TestClient(create_app(container)) as client:
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["role"] == "integration"


@pytest.mark.parametrize(
    "args",
    [
        ("users", "add", "y", "--role", "emperor"),
        ("users", "token", "nobody"),
    ],
    ids=["unknown-role", "unknown-user"],
)
def test_user_commands_refuse_bad_input(run: Invoke, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert "ocrm_" not in result.output


def test_adding_a_user_twice_fails(run: Invoke) -> None:
    assert run("users", "add", "x", "--role", "operator").exit_code == 0
    again = run("users", "add", "x", "--role", "admin")
    assert again.exit_code == 1
    assert "exists" in again.output


def test_generate_then_import_everything(
    run: Invoke, tmp_path: Path, opened: Callable[[], Container]
) -> None:
    out = tmp_path / "data"
    generated = run(
        "generate", "--out", str(out), "--customers", "100", "--events", "600", "--interactions", "150"
    )
    assert generated.exit_code == 0, generated.output
    sizes = {"customers": 100, "events": 600, "interactions": 150}
    for name, size in sizes.items():
        lines = (out / f"{name}.jsonl").read_bytes().splitlines()
        assert len(lines) == size, name

    for name, size in sizes.items():
        result = run("import", name, str(out / f"{name}.jsonl"))
        assert result.exit_code == 0, result.output
        assert f"{size} lines: {size} stored, 0 already known" in result.output, result.output

    container = opened()
    with container.reader() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 750
        assert conn.execute(select(func.count()).select_from(customers)).scalar_one() >= 100

    again = run("import", "events", str(out / "events.jsonl"))
    assert again.exit_code == 0, again.output
    assert "600 lines: 0 stored, 600 already known" in again.output


def test_import_of_a_bad_file_names_the_line_and_writes_nothing(
    run: Invoke, tmp_path: Path, opened: Callable[[], Container]
) -> None:
    good = {
        "event_id": "cli-1",
        "type": "auth.failed",
        "occurred_at": "2026-10-01T10:00:00Z",
        "source": "web",
        "identifiers": {"cookie_id": "ck-cli"},
        "attributes": {"method": "otp"},
    }
    bad = {**good, "event_id": "cli-2", "attributes": {"method": "carrier-pigeon"}}
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n")

    result = run("import", "events", str(path))

    assert result.exit_code == 1, result.output
    assert "line 2" in result.output
    assert "attributes.method" in result.output
    with opened().reader() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_import_of_a_missing_file_fails(run: Invoke, tmp_path: Path) -> None:
    result = run("import", "events", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2  # a usage error, with click's message, not a traceback
    assert "does not exist" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_check_config_accepts_the_shipped_catalogue(run: Invoke) -> None:
    result = run("check-config")
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    assert "event types" in result.output


@pytest.mark.parametrize(
    ("old", "new", "occurrence", "field"),
    [
        (
            "amount: {type: number, min: 0}",
            "amount: {type: money, min: 0}",
            2,
            "product.opened.attributes.amount.type",
        ),
        (
            "severity: {type: enum, values: [low, medium, high]}",
            "severity: {type: enum}",
            1,
            "crm.complaint.registered.attributes.severity",
        ),
        ("kind: interaction", "kind: conversation", 3, "crm.complaint.resolved.kind"),
        ("step: {type: string}", "step: {type: string, min: 1}", 1, "registration.attempted.attributes.step"),
        (
            "product: {class: card, contract_from: contract_number, state: active}",
            "product: {class: card, contract_from: contract_number, state: dormant}",
            1,
            "card.activated.product",
        ),
    ],
    ids=["bad-attribute-type", "enum-without-values", "unknown-kind", "min-on-a-string", "impossible-state"],
)
def test_check_config_names_the_file_and_line_of_a_broken_catalogue(
    run: Invoke, tmp_path: Path, old: str, new: str, occurrence: int, field: str
) -> None:
    lines = CATALOGUE.read_text(encoding="utf-8").splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if old in line]
    assert len(hits) >= occurrence
    number = hits[occurrence - 1]
    lines[number] = lines[number].replace(old, new)
    broken = tmp_path / "broken-catalogue.yaml"
    broken.write_text("".join(lines), encoding="utf-8")

    result = run("check-config", catalogue=broken)

    assert result.exit_code == 1, result.output
    assert f"{broken}:{number + 1}:types.{field}" in _flat(result.output), result.output


def test_check_config_reports_a_yaml_syntax_error_with_its_line(run: Invoke, tmp_path: Path) -> None:
    lines = CATALOGUE.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[40] = "  : [unbalanced\n"
    broken = tmp_path / "syntax.yaml"
    broken.write_text("".join(lines), encoding="utf-8")
    result = run("check-config", catalogue=broken)
    assert result.exit_code == 1
    assert str(broken) in _flat(result.output)
    assert "YAML" in result.output


def test_commands_refuse_to_start_with_a_broken_catalogue(run: Invoke, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 0\ntypes: {}\n", encoding="utf-8")
    result = run("migrate", catalogue=broken)
    assert result.exit_code == 2
    assert "configuration refused" in result.output
