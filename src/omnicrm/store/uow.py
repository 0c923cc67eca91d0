"""The unit of work: one connection, one transaction; nothing is written unless `commit()` is called."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from omnicrm.store.db import WRITE


class UnitOfWork:
    """`with UnitOfWork(engine) as uow: ...; uow.commit()` - leaving without commit rolls back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __enter__(self) -> UnitOfWork:
        self._conn = self.engine.connect().execution_options(**WRITE)
        self._conn.begin()
        return self

    def commit(self) -> None:
        self.conn.commit()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.in_transaction():
                conn.rollback()
            conn.close()
