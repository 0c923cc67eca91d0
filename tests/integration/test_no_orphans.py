"""No orphans: `omnicrm decide` and `omnicrm worker` killed outright (SIGKILL, no chance to clean up)
take their partitions' processes with them - forked (`decide`, one thread) and spawned (`worker`,
threaded). Left behind, each would finish its share and then wait on a pipe forever, holding its memory.
The tie itself (`lifeline.py`): the kernel's, the polling fallback, and a parent gone before the tie."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from omnicrm.bootstrap import bootstrap
from omnicrm.catchup import MIN_EVENTS
from omnicrm.services.intake.importer import import_customers, import_events
from omnicrm.services.intake.ingest import EVENT_KINDS
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.sim.generate import DatasetSize, generate, write_dataset

CATALOGUE = SHIPPED_CATALOGUE
SCENARIOS = SHIPPED_SCENARIOS
PG_URL = os.environ.get("OMNICRM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PROCESSES = 2
GONE_WITHIN_S = 5.0  # generous: a process tied to its parent goes at once

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


def _load(url: str, files: dict[str, Path]) -> None:
    """A queue long enough that the command splits it among partitions (catchup.MIN_EVENTS)."""
    container = bootstrap(
        Settings(database_url=url, catalogue_file=CATALOGUE, scenarios_dir=SCENARIOS, env="test"),
        migrate=True,
    )
    try:
        import_customers(container.uow, files["customers"], actor="test")
        import_events(container.uow, files["events"], container.catalogue, EVENT_KINDS, actor="test")
    finally:
        container.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    size = DatasetSize(customers=300, events=MIN_EVENTS + 500, interactions=0)
    data = generate(seed=17, size=size, start=datetime(2026, 8, 1, tzinfo=UTC))
    return write_dataset(data, tmp_path_factory.mktemp("orphans-data"))


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> Path:
    path = tmp_path_factory.mktemp("orphans-sqlite") / "loaded.db"
    _load(f"sqlite:///{path}", files)
    return path


@pytest.fixture(scope="module")
def pg_template(files: dict[str, Path]) -> Iterator[str]:
    """A loaded PostgreSQL database each test copies (CREATE DATABASE ... TEMPLATE)."""
    name = f"omnicrm_orphans_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _load(make_url(PG_URL).set(database=name).render_as_string(hide_password=False), files)
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh copy of the loaded database: its URL."""
    if request.param == "sqlite":
        path = tmp_path / "orphans.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"omnicrm_orphans_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state, ppid, ... starttime at [19])."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(parent: int) -> dict[int, bytes]:
    """Live processes whose parent is `parent`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or int(fields[1]) != parent or fields[0] in ("Z", "X"):
            continue
        try:
            found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
    return found


def _family(parent: int) -> dict[int, str]:
    """Every live descendant of `parent`: pid -> its start time (which tells a reused pid apart)."""
    family: dict[int, str] = {}
    todo = [parent]
    while todo:
        for pid in _children(todo.pop()):
            fields = _stat(pid)
            if fields is not None:
                family[pid] = fields[19]
                todo.append(pid)
    return family


def _alive(family: dict[int, str]) -> list[int]:
    """Those of `family` still running (a zombie holds nothing and counts as gone)."""
    alive = []
    for pid, started in family.items():
        fields = _stat(pid)
        if fields is not None and fields[19] == started and fields[0] not in ("Z", "X"):
            alive.append(pid)
    return alive


def _partitions(parent: int) -> list[int]:
    """The partitions' processes of `parent` (not multiprocessing's resource tracker)."""
    return [pid for pid, command in _children(parent).items() if b"resource_tracker" not in command]


def _at_work(pid: int, database: str) -> bool:
    """Whether `pid` has its own connection to `database` (so it has passed its start-up): the SQLite
    file open, or a socket (the parent closes its connections before it forks)."""
    path = make_url(database).database if database.startswith("sqlite") else None
    for fd in (Path("/proc") / str(pid) / "fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target == path or (path is None and target.startswith("socket:")):
            return True
    return False


def _until(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    return check()


# forked (decide) and spawned (worker) partitions; on PostgreSQL the forked ones only, to save time
@pytest.mark.parametrize(
    ("database", "command"),
    [("sqlite", "decide"), ("sqlite", "worker"), ("postgresql", "decide")],
    indirect=["database"],
)
def test_the_partitions_die_with_a_killed_command(command: str, database: str, tmp_path: Path) -> None:
    """Killed while its partitions decide (each connected to the database)."""
    env = {
        **os.environ,
        "OMNICRM_DATABASE_URL": database,
        "OMNICRM_CATALOGUE_FILE": str(CATALOGUE),
        "OMNICRM_SCENARIOS_DIR": str(SCENARIOS),
    }
    log = tmp_path / "command.log"
    with log.open("wb") as out:
        parent = subprocess.Popen(
            [sys.executable, "-m", "omnicrm", command, "--processes", str(PROCESSES)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    family: dict[int, str] = {}
    try:

        def working() -> bool:
            partitions = _partitions(parent.pid)
            return len(partitions) >= PROCESSES and all(_at_work(pid, database) for pid in partitions)

        started = _until(working, 60)
        family = _family(parent.pid)
        assert started, f"no {PROCESSES} partitions at work (exit {parent.poll()}):\n{log.read_text()}"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        gone = _until(lambda: not _alive(family), GONE_WITHIN_S)
        assert gone, f"still running {GONE_WITHIN_S} s after their parent was killed: {_alive(family)}"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        for pid in _alive(family):  # whatever this test finds, it leaves no orphans behind
            os.kill(pid, signal.SIGKILL)


# A child tied to its parent (the pid in argv[1]) the way catchup ties the partitions; "poll" as where
# the kernel does not offer it.
_TIED = """
import sys, time
from omnicrm import lifeline
if sys.argv[2] == "poll":
    lifeline._kernel_kills_on_parent_death = lambda: False
lifeline.die_with(int(sys.argv[1]))
print("tied", flush=True)
time.sleep(60)
"""
# A parent that starts a tied child, prints its pid, then waits to be killed.
_PARENT = """
import os, subprocess, sys, time
tied = [sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]]
child = subprocess.Popen(tied, stdout=subprocess.PIPE)
assert child.stdout is not None and child.stdout.readline() == b"tied\\n"
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("way", ["kernel", "poll"])
def test_a_tied_child_dies_with_its_killed_parent(way: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _TIED, way], stdout=subprocess.PIPE)
    family: dict[int, str] = {}
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        family = {pid: started for pid, started in _family(parent.pid).items() if pid == child}
        assert family, "the tied child is not running"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        gone = _until(lambda: not _alive(family), GONE_WITHIN_S)
        assert gone, f"the tied child outlived its parent by {GONE_WITHIN_S} s"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        for pid in _alive(family):
            os.kill(pid, signal.SIGKILL)


def test_a_child_whose_parent_ended_before_the_tie_dies_at_once() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid: a parent that ended before its child could be tied to it
    tied = subprocess.run(
        [sys.executable, "-c", _TIED, str(ended.pid), "kernel"], capture_output=True, timeout=30
    )
    assert tied.returncode == -signal.SIGKILL, tied.stderr.decode()
    assert tied.stdout == b""
