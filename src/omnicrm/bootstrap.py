"""The one place where settings, database, catalogue and services are wired together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.scenarios import Library
from omnicrm.services.datafiles import load_catalogue, load_library
from omnicrm.settings import Settings
from omnicrm.store import migrate as migrations
from omnicrm.store.db import make_engine
from omnicrm.store.uow import UnitOfWork


@dataclass
class Container:
    """Everything a request, a command or a worker needs, built once."""

    settings: Settings
    engine: Engine
    catalogue: Catalogue
    library: Library

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A read-only connection (its transaction is rolled back at the end)."""
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, migrate: bool = False) -> Container:
    """Build the container; nothing connects at import time."""
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    if migrate:
        migrations.upgrade(engine)
    catalogue = load_catalogue(settings.catalogue_file)
    library = load_library(settings.scenarios_dir, catalogue)
    return Container(settings=settings, engine=engine, catalogue=catalogue, library=library)
