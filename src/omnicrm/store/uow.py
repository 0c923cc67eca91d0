"""The unit of work: one connection, one transaction; nothing is written unless `commit()` is called."""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from omnicrm.store.db import WRITE, write_gate


class UnitOfWork:
    """`with UnitOfWork(engine) as uow: ...; uow.commit()` - leaving without commit rolls back.

    A writer's unit of work takes SQLite's write lock when it begins; `reading()` gives one that
    only reads (a snapshot on SQLite) and leaves the lock to the writers."""

    def __init__(self, engine: Engine, *, write: bool = True) -> None:
        self.engine, self.write = engine, write
        self._conn: Connection | None = None
        self._stack = ExitStack()

    def reading(self) -> UnitOfWork:
        return UnitOfWork(self.engine, write=False)

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __enter__(self) -> UnitOfWork:
        gate = write_gate(self.engine) if self.write else None
        if gate is not None:
            self._stack.enter_context(gate.held())
        try:
            conn = self.engine.connect()
            self._conn = conn.execution_options(**WRITE) if self.write else conn
            self._conn.begin()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def commit(self) -> None:
        self.conn.commit()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        with self._stack:  # the gate opens for the next writer once this one has finished
            if conn is not None:
                if conn.in_transaction():
                    conn.rollback()
                conn.close()
