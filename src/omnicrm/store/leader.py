"""At most one holder per database of a named role (the decision worker): the others stand by.

PostgreSQL: a session advisory lock held on a connection kept for the purpose (unlocked before the
connection goes back to the pool). SQLite: an exclusive
`flock` on a file beside the database. Both are released when the holder closes or its process dies.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from sqlalchemy import Engine, text

DECIDER = 4_242_003


class Leadership:
    def __init__(self, engine: Engine, key: int = DECIDER) -> None:
        self.engine, self.key = engine, key
        self._held: Any = None  # the PostgreSQL connection or the lock file descriptor

    @property
    def held(self) -> bool:
        return self._held is not None

    def acquire(self) -> bool:
        """True if this process leads (now or already); never blocks."""
        if self._held is not None:
            return True
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            won = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
            if won:
                self._held = conn
            else:
                conn.close()
            return won
        database = self.engine.url.database
        if not database or database == ":memory:":
            self._held = -1  # a private database: nobody else can decide on it
            return True
        fd = os.open(f"{database}.lock-{self.key}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._held = fd
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None or held == -1:
            return
        if isinstance(held, int):
            os.close(held)  # closing the descriptor drops the flock
        else:  # the pool keeps the session alive, so unlock explicitly before handing it back
            try:
                held.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                held.commit()
            finally:
                held.close()
