"""A bench run's copy of the loaded database holds its data, and nothing of it is left afterwards."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from omnicrm.bench.copies import sqlite_copy
from omnicrm.store.db import make_engine


def test_a_copy_has_the_base_data_and_leaves_no_file_behind(tmp_path: Path) -> None:
    base = tmp_path / "base.db"
    engine = make_engine(f"sqlite:///{base}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1), (2)"))
    engine.dispose()
    before = sorted(p.name for p in tmp_path.iterdir())

    with sqlite_copy(base, tmp_path / "run.db") as url:
        copy = make_engine(url)
        with copy.begin() as conn:  # a write: the copy gets its log
            conn.execute(text("INSERT INTO t VALUES (3)"))
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 3
        assert (tmp_path / "run.db-wal").exists()
        copy.dispose()

    assert sorted(p.name for p in tmp_path.iterdir()) == before
    check = make_engine(f"sqlite:///{base}")
    with check.connect() as conn:  # the base is untouched
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
    check.dispose()
