"""The one place where settings, database, catalogue and services are wired together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.privacy import use_pseudonym_key
from omnicrm.domain.scenarios import Library
from omnicrm.services.conversations import registry
from omnicrm.services.conversations.datafiles import DataFileError, LibraryFiles, load_catalogue, read_library
from omnicrm.settings import Settings
from omnicrm.store import audit_key
from omnicrm.store import migrate as migrations
from omnicrm.store import registry as registry_store
from omnicrm.store.db import make_engine
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Container:
    """Everything a request, a command or a worker needs, built once."""

    settings: Settings
    engine: Engine
    catalogue: Catalogue
    library: Library
    generation: int = 0  # the published library generation `library` was built from (0: files only)
    _checked_at: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A read-only connection (its transaction is rolled back at the end) that sees one snapshot:
        an answer composed of several queries never mixes commits. SQLite's read transaction is a
        snapshot already; PostgreSQL's default READ COMMITTED is not, so readers use REPEATABLE READ
        (a read-only transaction never fails to serialise there)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    def refresh_library(self) -> bool:
        """Switch to the newest published generation if another process (or a reload) made one."""
        with self._lock, self.reader() as conn:
            self._checked_at = time.monotonic()
            if not registry_store.has_registry(conn):
                return False
            number = registry_store.generation_number(conn)
            if number is None or number == self.generation:
                return False
            loaded = registry.load(conn)
        if loaded is None:
            return False
        self.library, self.generation = loaded
        log.info("scenario library: now on generation %d", self.generation)
        return True

    def current_library(self, max_age_s: float = 1.0) -> Library:
        """The library, checked against the database at most every `max_age_s` seconds."""
        if time.monotonic() - self._checked_at >= max_age_s:
            self.refresh_library()
        return self.library

    def close(self) -> None:
        self.engine.dispose()


def publish_files(
    container: Container, files: LibraryFiles | None = None, *, actor: str, note: str = ""
) -> registry.PublishReport:
    """Check the scenarios directory and publish it; raises DataFileError (nothing changes) if refused."""
    files = files or read_library(container.settings.scenarios_dir, container.catalogue)
    with container.uow() as uow:
        report = registry.publish(
            uow.conn,
            files,
            actor=actor,
            now=datetime.now(UTC),
            note=note,
            where=str(container.settings.scenarios_dir),
        )
        uow.commit()
    container.refresh_library()
    return report


def bootstrap(settings: Settings | None = None, *, migrate: bool = False) -> Container:
    """Build the container and bring it onto the newest published scenario library.

    With `migrate`, the scenario files are also published when they changed (a fresh database or a
    deploy needs no extra step). Files that are refused leave the last published library running;
    they fail the start only when nothing was ever published."""
    settings = settings or Settings()
    use_pseudonym_key(settings.pseudonym_key.get_secret_value())  # the erasure tombstones' HMAC key
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    audit_key.use_key(engine, audit_key.resolve(settings))
    if migrate:
        migrations.upgrade(engine)
    catalogue = load_catalogue(settings.catalogue_file)
    try:
        files: LibraryFiles | None = read_library(settings.scenarios_dir, catalogue)
        refused: DataFileError | None = None
    except DataFileError as exc:
        files, refused = None, exc
    if files is None:
        with engine.connect() as conn:
            loaded = registry.load(conn) if registry_store.has_registry(conn) else None
        if loaded is None or refused is None:
            raise refused or DataFileError([])
        log.error("scenario files refused, generation %d keeps running:\n%s", loaded[1], refused)
        return Container(settings, engine, catalogue, loaded[0], loaded[1])
    container = Container(settings, engine, catalogue, files.library)
    if migrate and settings.publish_on_start:
        try:
            publish_files(container, files, actor="system:startup", note="published at start")
        except IntegrityError:  # another process published the same files at the same moment
            container.refresh_library()
        except DataFileError as exc:  # e.g. a published version edited in place
            container.refresh_library()
            if container.generation == 0:
                raise
            log.error("scenario files refused, generation %d keeps running:\n%s", container.generation, exc)
    else:
        container.refresh_library()
    return container
