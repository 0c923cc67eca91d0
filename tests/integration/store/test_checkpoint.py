"""SQLite's write-ahead log is checkpointed by a background thread, not inside writers' commits."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import text

from omnicrm.store.checkpoint import INTERVAL_S
from omnicrm.store.db import make_engine


def _checkpointers() -> int:
    return sum(t.name == "omnicrm-checkpoint" for t in threading.enumerate())


def test_the_log_reaches_the_database_file_without_a_writer_checkpointing(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    before = _checkpointers()
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    assert _checkpointers() == before + 1
    for batch in range(5):  # ~5 MB: past SQLite's own threshold (~4 MB), far below the writers' (~80 MB)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO t (body) VALUES (:b)"),
                [{"b": f"{batch}-{n}-" + "x" * 1000} for n in range(1000)],
            )
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() > 1000

    deadline = time.monotonic() + 10 * INTERVAL_S + 5
    while os.path.getsize(path) < 4_000_000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.path.getsize(path) >= 4_000_000  # the pages were copied from the log into the file

    engine.dispose()
    assert _checkpointers() == before
    with engine.connect() as conn:  # a disposed engine used again gets its checkpointer back
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 5000
    assert _checkpointers() == before + 1
    engine.dispose()


def test_a_database_in_memory_has_no_checkpointer() -> None:
    before = _checkpointers()
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert _checkpointers() == before
    engine.dispose()
