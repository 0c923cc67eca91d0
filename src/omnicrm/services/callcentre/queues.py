"""Loading scenarios/queues.yaml: refused with file, line and reason like every other data file."""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import ValidationError

from omnicrm.domain.callcentre import QueueBook
from omnicrm.services.conversations.datafiles import DataFileError, FileError, load_yaml, validation_errors

FILE_NAME = "queues.yaml"


def load_queues(path: Path) -> QueueBook:
    """Read and check the queue book, or raise DataFileError naming every problem."""
    data, tree = load_yaml(path)
    if not isinstance(data, dict):
        raise DataFileError([FileError(str(path), 1, "", "the file must be a mapping of settings")])
    try:
        return QueueBook.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(validation_errors(path, exc, tree)) from None


class QueueFile:
    """The queue book of a scenarios directory, read again when the file changes (an edited file
    that does not validate raises, and the previous book is not used silently)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._lock = threading.Lock()
        self._loaded: tuple[int, QueueBook] | None = None

    def current(self) -> QueueBook:
        stamp = self.path.stat().st_mtime_ns
        with self._lock:
            if self._loaded is None or self._loaded[0] != stamp:
                self._loaded = (stamp, load_queues(self.path))
            return self._loaded[1]
