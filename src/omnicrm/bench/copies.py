"""Fresh copies of a loaded SQLite database, one per measured run, removed right after it.

A run leaves a few hundred megabytes (`bench decide`: ~260 MB a copy, three kept); removed at once,
the bench needs the space of one copy, and the kernel does not write back a finished run's pages
while the next run is measured. (Interleaved A/B on `bench decide` showed no difference in time
beyond this machine's noise; the point is the space and the quieter disk.)"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# SQLite's companions of a database file, and the write gate's lock file (store/write_gate.py)
_COMPANIONS = ("-wal", "-shm", "-journal", "-writers.lock")


@contextmanager
def sqlite_copy(base: Path, db: Path) -> Iterator[str]:
    """Copy `base` to `db` and yield its URL; afterwards `db` and its companions are gone. The
    caller closes every connection to it inside the block."""
    remove(db)
    shutil.copy(base, db)
    try:
        yield f"sqlite:///{db}"
    finally:
        remove(db)


def remove(db: Path) -> None:
    for path in (db, *(db.with_name(db.name + suffix) for suffix in _COMPANIONS)):
        path.unlink(missing_ok=True)
