"""File import (JSON Lines or CSV) of customers, events and interactions.

A file is one batch, written in one transaction: if any line is wrong, nothing is written and
every problem is reported with its line number. Events and profiles are validated and written in
chunks of 1,000 (the progress bar moves with them; see `import_files` for the second process that
validates big files). A re-run is safe: events are idempotent by event_id and profiles by identifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.services import collector
from omnicrm.services.intake import ingest
from omnicrm.services.intake.import_files import validated_chunks, validated_profiles
from omnicrm.services.profiles import bulk_profiles
from omnicrm.store import audit, profiles
from omnicrm.store.uow import UnitOfWork

Progress = Callable[[int], None]


@dataclass(slots=True)
class ImportReport:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    customers_created: int = 0
    merges: int = 0


def _fail(errors: list[ItemError], total: int) -> None:
    if errors:
        bad = len({e.index for e in errors})
        raise InvalidInput(f"{bad} of {total} lines are invalid; nothing was imported", errors[:1000])


def import_events(
    uow_factory: Callable[[], UnitOfWork],
    path: Path,
    catalogue: Catalogue,
    kinds: frozenset[str],
    *,
    actor: str,
    progress: Progress | None = None,
    parallel: bool | None = None,
) -> ImportReport:
    """Write every line in one transaction, committed only if every line is valid; errors carry
    line numbers. Lines are validated chunk by chunk (`import_files.validated_chunks`, in a second
    process for big files) while the chunk before is written; after the first problem nothing more
    is written, the rest is still validated so that every problem is reported, and all is rolled back.
    """
    report = ImportReport()
    errors: list[ItemError] = []
    reading = validated_chunks(path, catalogue, kinds, parallel=parallel)
    with collector.paused(), reading as chunks, uow_factory() as uow:
        for chunk in chunks:
            report.lines += chunk.records
            errors.extend(chunk.errors)
            given = {p.customer_id for _, p in chunk.items if p.customer_id}
            known = profiles.root_of(uow.conn, given) if given else {}
            errors.extend(
                ItemError(line, "customer_id", "no such customer")
                for line, p in chunk.items
                if p.customer_id and p.customer_id not in known
            )
            if not errors:
                part = [p for _, p in chunk.items]
                written = ingest.ingest(uow.conn, part, actor=actor, now=datetime.now(UTC))
                report.accepted += written.accepted
                report.duplicates += written.duplicates
                report.customers_created += written.customers_created
                report.merges += written.merges
            if progress:
                progress(chunk.records)
        _fail(errors, report.lines)
        _audit_import(uow, path, "events", report, actor)
        uow.commit()
    return report


def import_customers(
    uow_factory: Callable[[], UnitOfWork],
    path: Path,
    *,
    actor: str,
    progress: Progress | None = None,
    parallel: bool | None = None,
) -> ImportReport:
    """Create or update every profile of the file in one transaction, committed only if every line
    is valid; errors carry line numbers. Lines are validated chunk by chunk
    (`import_files.validated_profiles`, in a second process for big files) while the chunk before
    is written (`bulk_profiles.upsert_many`). After the first problem nothing more is written; the
    rest is still validated, and invalid lines are reported before a refusal found in writing
    (a contract of another person, an unknown related person), as if all were validated first."""
    report = ImportReport()
    errors: list[ItemError] = []
    refused: InvalidInput | None = None
    with collector.paused(), validated_profiles(path, parallel=parallel) as chunks, uow_factory() as uow:
        for chunk in chunks:
            report.lines += chunk.records
            errors.extend(chunk.errors)
            if not errors and refused is None:
                try:
                    results = bulk_profiles.upsert_many(
                        uow.conn, chunk.items, actor=actor, now=datetime.now(UTC)
                    )
                except InvalidInput as exc:
                    first = exc.errors[0].index
                    refused = InvalidInput(f"line {first}: {exc.detail}; nothing was imported", exc.errors)
                else:
                    report.customers_created += sum(created for _, created in results)
                    report.accepted += len(results)
            if progress:
                progress(chunk.records)
        _fail(errors, report.lines)
        if refused is not None:
            raise refused
        _audit_import(uow, path, "customers", report, actor)
        uow.commit()
    return report


def _audit_import(uow: UnitOfWork, path: Path, what: str, report: ImportReport, actor: str) -> None:
    details = {"lines": report.lines, "accepted": report.accepted, "duplicates": report.duplicates}
    audit.append(
        uow.conn,
        at=datetime.now(UTC),
        actor=actor,
        action=f"import.{what}",
        target=path.name[:64],
        details=details,
    )
