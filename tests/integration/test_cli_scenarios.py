"""`omnicrm scenarios reload|list|schema` in-process (typer's CliRunner) on SQLite and PostgreSQL.

The commands run on the `container` fixture's database (emptied before and after each test) with a
copy of scenarios/ in tmp_path, edited the way a marketer would; the repository's files stay as they are.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from omnicrm.bootstrap import Container
from omnicrm.cli import app
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS
from omnicrm.store.tables import library_generations, scenario_versions

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = SHIPPED_SCENARIOS
LOAN = "loan-application-reminder"
RETIRED = "card-tariff-interest"
Invoke = Callable[..., Result]


@pytest.fixture
def scenarios_dir(tmp_path: Path) -> Path:
    target = tmp_path / "scenarios"
    shutil.copytree(SHIPPED, target)
    return target


@pytest.fixture
def run(container: Container, scenarios_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """run(*args) -> the Result of `omnicrm <args>` on the fixture's database and the tmp scenarios/."""
    monkeypatch.chdir(tmp_path)  # no stray .env, and nothing written into the repository
    runner = CliRunner()
    env = {
        "OMNICRM_DATABASE_URL": container.engine.url.render_as_string(hide_password=False),
        "OMNICRM_CATALOGUE_FILE": str(SHIPPED_CATALOGUE),
        "OMNICRM_SCENARIOS_DIR": str(scenarios_dir),
        "OMNICRM_ENV": "test",
    }
    return lambda *args: runner.invoke(app, list(args), env=env)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(path: Path, prefix: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.startswith(prefix))


def _flat(text: str) -> str:
    """Output without whitespace, so that rich's line wrapping cannot split what we look for."""
    return "".join(text.split())


def generations(container: Container) -> list[tuple[int, str, str]]:
    with container.reader() as conn:
        query = select(
            library_generations.c.generation, library_generations.c.published_by, library_generations.c.note
        ).order_by(library_generations.c.generation)
        return [(r.generation, r.published_by, r.note) for r in conn.execute(query)]


def current_loan(container: Container) -> int:
    with container.reader() as conn:
        query = select(library_generations.c.current).order_by(library_generations.c.generation.desc())
        current = conn.execute(query.limit(1)).scalar_one()
    return int(current[LOAN])


def test_reload_publishes_the_files_then_finds_nothing_changed(run: Invoke, container: Container) -> None:
    first = run("scenarios", "reload", "--note", "first publication")

    assert first.exit_code == 0, first.output
    assert "published generation 1" in first.output
    assert f"new version {LOAN}@1" in first.output
    assert generations(container) == [(1, "cli", "first publication")]
    with container.reader() as conn:
        assert len(conn.execute(select(scenario_versions.c.version)).all()) == 42

    again = run("scenarios", "reload")

    assert again.exit_code == 0, again.output
    assert "nothing changed: generation 1 keeps running" in again.output
    assert generations(container) == [(1, "cli", "first publication")]


def test_reload_reports_new_and_retired_versions(
    run: Invoke, container: Container, scenarios_dir: Path
) -> None:
    assert run("scenarios", "reload").exit_code == 0
    loan = scenarios_dir / "templates" / f"{LOAN}.yaml"
    edit(loan, "version: 1\n", "version: 2\n")
    edit(loan, "    wait: 24h\n", "    wait: 12h\n")
    (scenarios_dir / "templates" / f"{RETIRED}.yaml").unlink()

    result = run("scenarios", "reload")

    assert result.exit_code == 0, result.output
    assert "published generation 2" in result.output
    assert f"new version {LOAN}@2" in result.output
    assert f"retired {RETIRED}" in result.output
    assert [g for g, _, _ in generations(container)] == [1, 2]
    assert current_loan(container) == 2


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ("    wait: 24h\n", "    wait: 12h\n", "version:", "already published with other content"),
        ("start: push\n", "start: [push\n", None, "YAML syntax"),
    ],
    ids=["edited-in-place", "broken-yaml"],
)
def test_refused_files_exit_1_naming_file_and_line_and_the_generation_keeps_running(
    run: Invoke,
    container: Container,
    scenarios_dir: Path,
    old: str,
    new: str,
    key: str | None,
    reason: str,
) -> None:
    assert run("scenarios", "reload").exit_code == 0
    loan = scenarios_dir / "templates" / f"{LOAN}.yaml"
    edit(loan, old, new)

    result = run("scenarios", "reload")

    assert result.exit_code == 1, result.output
    flat = _flat(result.output)
    if key is not None:
        assert f"{loan}:{line_of(loan, key)}:version:" in flat, result.output
    else:
        start = line_of(loan, "start:")
        assert any(f"{loan}:{n}:" in flat for n in (start, start + 1, start + 2)), result.output
    assert _flat(reason) in flat
    assert "refused: generation 1 keeps running" in result.output
    assert [g for g, _, _ in generations(container)] == [1]
    assert current_loan(container) == 1


def test_list_shows_the_generation_and_the_current_versions(run: Invoke) -> None:
    assert run("scenarios", "reload").exit_code == 0

    result = run("scenarios", "list")

    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "generation1" in flat
    assert LOAN in flat


def test_schema_out_writes_the_published_schema(run: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "scenario.schema.json"

    result = run("scenarios", "schema", "--out", str(out))

    assert result.exit_code == 0, result.output
    shipped = (SHIPPED / "schema" / "scenario.schema.json").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == shipped


# ---------------------------------------------------------------- omnicrm scenarios simulate

JOURNEY = """\
start: 2026-12-01T08:00:00Z
days: 5
client:
  timezone: Europe/Kyiv
  consents:
    - {channel: webpush, purpose: marketing, granted: true, effective_at: 2026-01-01T00:00:00Z}
    - {channel: email, purpose: marketing, granted: true, effective_at: 2026-01-01T00:00:00Z}
events:
  - at: 0h
    type: application.abandoned
    attributes: {product_class: consumer_loan, application_id: A-1, last_step: documents}
"""


def test_simulate_prints_the_trace_of_an_unpublished_scenario_file(
    run: Invoke, scenarios_dir: Path, tmp_path: Path
) -> None:
    journey = tmp_path / "journey.yaml"
    journey.write_text(JOURNEY, encoding="utf-8")
    draft = tmp_path / "draft.yaml"
    draft.write_text(
        (scenarios_dir / "templates" / f"{LOAN}.yaml")
        .read_text(encoding="utf-8")
        .replace(f"id: {LOAN}", "id: loan-draft")
        .replace("wait: 24h", "wait: 6h"),
        encoding="utf-8",
    )

    result = run("scenarios", "simulate", str(journey), "--scenario", str(draft), "--only", "loan-draft")

    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    sends = [(words[2], words[4]) for words in lines if len(words) > 4 and words[3] in ("send", "task")]
    assert sends == [("+0h00", "loan-draft/push"), ("+6h00", "loan-draft/email")]
    assert "nothing was stored or sent" in result.output
    assert "skip" in result.output  # no call-centre consent: the call step is skipped, with its reason
    assert "no marketing consent on callcentre" in result.output


def test_simulate_refuses_a_bad_journey_file_with_its_line(run: Invoke, tmp_path: Path) -> None:
    journey = tmp_path / "journey.yaml"
    journey.write_text(JOURNEY.replace("days: 5", "days: 500"), encoding="utf-8")

    result = run("scenarios", "simulate", str(journey))

    assert result.exit_code == 1
    assert f"{journey}:2" in _flat(result.output)
    assert "days" in result.output


def test_the_readme_journey_prints_the_readme_trace(run: Invoke, tmp_path: Path) -> None:
    """The journey and trace in the README's scenario section are what the command gives."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("```yaml\nstart:") + len("```yaml\n")
    journey = tmp_path / "journey.yaml"
    journey.write_text(readme[start : readme.index("```", start)], encoding="utf-8")
    shown = readme.index("```\n", readme.index("and its trace with the shipped")) + len("```\n")
    expected = readme[shown : readme.index("```", shown)].splitlines()

    result = run("scenarios", "simulate", str(journey))

    assert result.exit_code == 0, result.output
    assert [" ".join(line.split()) for line in result.output.splitlines()] == [
        " ".join(e.split()) for e in expected
    ]
