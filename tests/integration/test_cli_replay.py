"""`omnicrm replay` from the command line: bad input is refused clearly, a run prints its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from omnicrm.cli import app
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS

Invoke = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.chdir(tmp_path)
    env = {
        "OMNICRM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "OMNICRM_CATALOGUE_FILE": str(SHIPPED_CATALOGUE),
        "OMNICRM_SCENARIOS_DIR": str(SHIPPED_SCENARIOS),
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return invoke


def test_replay_prints_a_json_report(run: Invoke) -> None:
    result = run(
        "replay", "--scenario", "deposit-renewal", "--from", "2026-11-01", "--to", "2026-12-01", "--json"
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["scenario"] == "deposit-renewal@1"
    assert (report["events"], report["entered"], report["contacted"]) == (0, 0, {})
    assert report["from"] == "2026-11-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday", "--to", "2026-12-01"], "is not a date"),
        (["--from", "2026-12-01", "--to", "2026-11-01"], "must be after --from"),
    ],
)
def test_replay_refuses_bad_periods(run: Invoke, args: list[str], message: str) -> None:
    result = run("replay", "--scenario", "deposit-renewal", *args)
    assert result.exit_code == 2
    assert message in "".join(result.output.split()) or message in result.output


def test_replay_of_an_unknown_scenario_fails(run: Invoke) -> None:
    result = run("replay", "--scenario", "no-such", "--from", "2026-11-01", "--to", "2026-12-01")
    assert result.exit_code == 1
    assert "no scenario no-such" in result.output
