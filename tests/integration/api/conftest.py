"""What the api tests share beyond tests/conftest.py: the `omnicrm` command in-process (typer's
CliRunner) against a temporary SQLite file, and containers opened on that file to read what it wrote."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from omnicrm.bootstrap import Container, bootstrap
from omnicrm.cli import app
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings

CATALOGUE = SHIPPED_CATALOGUE
SCENARIOS = SHIPPED_SCENARIOS


@pytest.fixture
def cli_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def run(tmp_path: Path, cli_db: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {
        "OMNICRM_DATABASE_URL": cli_db,
        "OMNICRM_CATALOGUE_FILE": str(CATALOGUE),
        "OMNICRM_SCENARIOS_DIR": str(SCENARIOS),
    }

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    return invoke


@pytest.fixture
def cli_container(cli_db: str) -> Iterator[Callable[[], Container]]:
    built: list[Container] = []

    def make() -> Container:
        settings = Settings(
            database_url=cli_db, catalogue_file=CATALOGUE, scenarios_dir=SCENARIOS, env="test"
        )
        built.append(bootstrap(settings))
        return built[-1]

    yield make
    for container in built:
        container.close()
