"""The first hour, as a newcomer meets it: the `omnicrm` command run as a separate process from a folder
of its own (not the repository), with nothing but the environment a newcomer would set."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from shell import SRC, omnicrm_cmd, shell_env

from omnicrm.api.app import create_app
from omnicrm.bootstrap import bootstrap
from omnicrm.settings import Settings

REPO = SRC.parent
SHIPPED_IDS = sorted(p.stem for p in (SRC / "omnicrm" / "data" / "scenarios" / "templates").glob("*.yaml"))
LOGIN = "/v1/auth/login"
TINY = ("--customers", "20", "--events", "60", "--interactions", "10")


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working folder that is not the repository (no catalogue/, no scenarios/, no .env)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_shipped_catalogue_and_scenarios_are_found_from_any_folder(elsewhere: Path) -> None:
    result = omnicrm_cmd("check-config", cwd=elsewhere)

    assert result.returncode == 0, result.stderr
    assert "30 event types" in result.stdout
    assert f"{len(SHIPPED_IDS)} scenarios" in result.stdout


def test_files_named_in_the_settings_are_used_instead_of_the_shipped_ones(elsewhere: Path) -> None:
    shutil.copytree(SRC / "omnicrm" / "data" / "scenarios", elsewhere / "mine")
    (elsewhere / "mine" / "templates" / "loan-application-reminder.yaml").unlink()

    result = omnicrm_cmd("check-config", cwd=elsewhere, OMNICRM_SCENARIOS_DIR="mine")

    assert result.returncode == 0, result.stderr
    assert f"{len(SHIPPED_IDS) - 1} scenarios" in result.stdout


def test_scenarios_list_never_cuts_an_id_at_80_columns(elsewhere: Path) -> None:
    url = f"sqlite:///{elsewhere / 'omnicrm.db'}"

    result = omnicrm_cmd("scenarios", "list", cwd=elsewhere, COLUMNS="80", OMNICRM_DATABASE_URL=url)

    assert result.returncode == 0, result.stderr
    words = set(result.stdout.split())
    assert [sid for sid in SHIPPED_IDS if sid not in words] == []


def test_demo_refuses_a_busy_port_before_creating_or_printing_anything(
    elsewhere: Path, busy_port: int
) -> None:
    result = omnicrm_cmd("demo", "--port", str(busy_port), *TINY, cwd=elsewhere)

    assert result.returncode != 0
    assert result.stdout == ""
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"127.0.0.1:{busy_port}" in message
    assert "in use" in message
    assert list(elsewhere.iterdir()) == []  # no var/, no database, no data set


def test_demo_serves_on_the_host_and_port_it_is_given(elsewhere: Path) -> None:
    port = _free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "omnicrm", "demo", "--host", "127.0.0.1", "--port", str(port), *TINY],
        cwd=elsewhere,
        env=shell_env(OMNICRM_PUBLISH_ON_START="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answered = _wait_for(f"http://127.0.0.1:{port}/healthz", demo, seconds=90)
    finally:
        demo.send_signal(signal.SIGINT)
        out, errors = demo.communicate(timeout=30)
    assert answered, errors
    assert f"http://127.0.0.1:{port}/docs" in out
    assert (elsewhere / "var" / "omnicrm.db").exists()


def _wait_for(url: str, process: subprocess.Popen[str], *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def test_users_add_reads_the_password_from_a_pipe_once_without_warnings(elsewhere: Path) -> None:
    url = f"sqlite:///{elsewhere / 'omnicrm.db'}"

    result = omnicrm_cmd(
        "users", "add", "ola", "--role", "operator", "--password", cwd=elsewhere,
        input="correct horse battery\n", OMNICRM_DATABASE_URL=url,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "correct horse" not in result.stdout
    container = bootstrap(Settings(database_url=url, env="test"))
    try:
        with TestClient(create_app(container)) as client:
            good = client.post(LOGIN, json={"username": "ola", "password": "correct horse battery"})
            bad = client.post(LOGIN, json={"username": "ola", "password": "correct horse"})
    finally:
        container.close()
    assert good.status_code == 200, good.text
    assert bad.status_code == 401


def test_users_add_refuses_an_empty_password_from_a_pipe(elsewhere: Path) -> None:
    url = f"sqlite:///{elsewhere / 'omnicrm.db'}"

    result = omnicrm_cmd(
        "users", "add", "ola", "--role", "operator", "--password", cwd=elsewhere, input="\n",
        OMNICRM_DATABASE_URL=url,
    )  # fmt: skip

    assert result.returncode == 2
    assert "password" in result.stderr
    assert not (elsewhere / "omnicrm.db").exists()


def test_make_clean_removes_the_database_in_var_and_says_so(elsewhere: Path) -> None:
    shutil.copy(REPO / "Makefile", elsewhere / "Makefile")
    (elsewhere / "var" / "demo-data").mkdir(parents=True)
    for name in ("var/omnicrm.db", "var/omnicrm.db-wal", "var/demo-data/events.jsonl", "keep.txt"):
        (elsewhere / name).write_text("x", encoding="utf-8")

    result = subprocess.run(
        ["make", "--no-print-directory", "clean"], cwd=elsewhere, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert not (elsewhere / "var").exists()
    assert (elsewhere / "keep.txt").exists()
    assert "var/" in result.stdout
