"""Engines for SQLite (embedded default) and PostgreSQL, tuned the same way everywhere.

Durability: a write is acknowledged (an event answered 201) only after its commit, and a commit
must survive a power cut, not only a crash of the process. SQLite in WAL mode gets that from
`synchronous=FULL` (the log is synced at every commit; the group commit makes that one sync per
few milliseconds, not one per request); `NORMAL` is the bank's explicit choice
(OMNICRM_SQLITE_SYNCHRONOUS). PostgreSQL gets it from `synchronous_commit`, which omnicrm never turns
off: a server or URL that does is overridden for omnicrm's sessions (with a warning).
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

from omnicrm.store.checkpoint import FALLBACK_PAGES, Checkpointer
from omnicrm.store.write_gate import WriteGate

log = logging.getLogger(__name__)
WRITE = {"omnicrm_write": True}
SYNCHRONOUS = ("FULL", "NORMAL")
_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: Engine) -> WriteGate | None:
    """The gate the writers of this engine's SQLite file queue at (None: no file, or PostgreSQL)."""
    return _GATES.get(engine)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, the chosen `synchronous` level, foreign keys and BEGIN
    IMMEDIATE for writers; PostgreSQL never `synchronous_commit=off`."""
    if sqlite_synchronous not in SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {SYNCHRONOUS}, not {sqlite_synchronous!r}")
    parsed = make_url(url)
    kwargs.setdefault("json_serializer", _dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":
            url = str(parsed.set(drivername="postgresql+psycopg"))
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", True)
        return _durable_commits(create_engine(url, **kwargs))
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
    on_file = bool(parsed.database) and parsed.database != ":memory:" and "mode=memory" not in url
    checkpointer = Checkpointer(str(parsed.database)) if on_file else None
    if on_file:
        _GATES[engine] = WriteGate(str(parsed.database))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={sqlite_synchronous}",
            "foreign_keys=ON",
            "busy_timeout=30000",
            "cache_size=-65536",
            "temp_store=MEMORY",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        if checkpointer is not None:  # checkpoints happen beside the writers, not inside their commits
            cursor.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
            checkpointer.start()
        cursor.close()

    @event.listens_for(engine, "engine_disposed")
    def _on_dispose(_engine: Engine) -> None:
        if checkpointer is not None:
            checkpointer.stop()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front, so two writers never deadlock upgrading a read lock.
        immediate = conn.get_execution_options().get("omnicrm_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _durable_commits(engine: Engine) -> Engine:
    """PostgreSQL: every session of this engine commits only once its WAL record is flushed.

    The server's default (`synchronous_commit=on`) is kept, as are the stronger replication levels
    a bank may set; only `off` - which acknowledges commits that a crash of the server can lose - is
    raised back to `on`, for omnicrm's sessions, with one warning per engine."""
    warned: list[bool] = []

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            if cursor.fetchone()[0] == "off":
                cursor.execute("SET synchronous_commit TO on")
                if not warned:
                    warned.append(True)
                    log.warning(
                        "PostgreSQL runs with synchronous_commit=off; omnicrm sets it on for its sessions"
                    )
        dbapi_connection.commit()  # a SET inside a transaction rolled back later would be undone

    return engine
