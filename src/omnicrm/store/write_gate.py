"""One queue for the writers of an SQLite file, across threads and processes.

SQLite lets one writer in at a time; the others wait in its busy handler, which polls with sleeps
of 1, 2, 5, 10, 15, 20 ms... - so a writer that could have started the moment the lock was freed
often starts several milliseconds later, and under load (two API workers, the decision worker)
those naps are most of a request's latency. Writers first take an exclusive `flock` on a file
beside the database instead: the kernel wakes the next one as soon as the holder lets go, and
only then does it ask SQLite for the write lock, which is free by then.

The gate only orders writers; SQLite's own lock still guards the data. A writer that does not
pass the gate (a migration) is still safe, it just waits the old way. The lock is released when
its holder's process dies, so a killed worker never blocks the others.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

_ALIVE: weakref.WeakSet[WriteGate] = weakref.WeakSet()


class WriteGate:
    """`with gate.held(): <one write transaction>` - re-entrant within a thread."""

    def __init__(self, database: str) -> None:
        self.path = f"{database}-writers.lock"
        self._threads = threading.RLock()  # one writer per process reaches the flock
        self._depth = 0
        self._fd = -1
        _ALIVE.add(self)

    def _descriptor(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def _forget_parent(self) -> None:
        """In a forked child: the parent's open file carries the parent's flock, and the copied
        lock and depth say the parent's thread is inside - start from nothing."""
        self._threads, self._depth = threading.RLock(), 0
        if self._fd >= 0:
            os.close(self._fd)  # the child's reference only; the parent keeps its lock
        self._fd = -1

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            self._depth += 1
            try:
                if self._depth == 1:
                    fcntl.flock(self._descriptor(), fcntl.LOCK_EX)  # waits without holding the GIL
                try:
                    yield
                finally:
                    if self._depth == 1:
                        fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._depth -= 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


def _after_fork_in_child() -> None:
    for gate in list(_ALIVE):
        gate._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
