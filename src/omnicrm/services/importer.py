"""File import (JSON Lines or CSV) of customers, events and interactions.

A file is one batch, written in one transaction: if any line is wrong, nothing is written and
every problem is reported with its line number. Events are validated and written in chunks of
1,000 (the progress bar moves with them; see `import_files` for the second process that
validates big files); profiles are all validated first. A re-run is safe: events are idempotent
by event_id and profiles by identifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.domain.pan import find_pan_paths
from omnicrm.services import bulk_profiles, collector, customers, ingest
from omnicrm.services.contracts import CustomerIn
from omnicrm.services.import_files import read_lines, validated_chunks
from omnicrm.store import audit, profiles
from omnicrm.store.uow import UnitOfWork

Progress = Callable[[int], None]
CHUNK = 1000


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


def _check_customer(item: CustomerIn, number: int) -> list[ItemError]:
    """What only the services check (identifier formats, lifecycle states), reported with the line."""
    problems: list[ItemError] = []
    for check in (
        lambda: customers.normalise_pairs(item.identifiers),
        lambda: customers.check_products(item.products),
        lambda: [
            customers.normalise_pairs([r.related], prefix=f"relationships[{i}].related")
            for i, r in enumerate(item.relationships)
        ],
    ):
        try:
            check()
        except InvalidInput as exc:
            problems.extend(ItemError(number, e.field, e.reason) for e in exc.errors)
    return problems


def import_customers(
    uow_factory: Callable[[], UnitOfWork], path: Path, *, actor: str, progress: Progress | None = None
) -> ImportReport:
    """Validate every profile line, then create or update all profiles in one transaction."""
    items: list[tuple[int, CustomerIn]] = []
    errors: list[ItemError] = []
    total = 0
    for number, raw in read_lines(path):
        total += 1
        if isinstance(raw, ItemError):
            errors.append(raw)
            continue
        pans = list(find_pan_paths(raw))
        if pans:
            errors.extend(ItemError(number, p, "looks like a payment card number") for p in pans)
            continue
        try:
            item = CustomerIn.model_validate(raw)
        except ValidationError as exc:
            errors.extend(
                ItemError(number, ".".join(str(p) for p in e["loc"]), e["msg"])
                for e in exc.errors(include_url=False)
            )
            continue
        errors.extend(_check_customer(item, number))
        items.append((number, item))
    _fail(errors, total)
    report = ImportReport(lines=total)
    with uow_factory() as uow:
        for start in range(0, len(items), CHUNK // 2):
            part = items[start : start + CHUNK // 2]
            try:
                results = bulk_profiles.upsert_many(
                    uow.conn, [item for _, item in part], actor=actor, now=datetime.now(UTC)
                )
            except InvalidInput as exc:
                lines = [ItemError(part[e.index or 0][0], e.field, e.reason) for e in exc.errors]
                raise InvalidInput(
                    f"line {lines[0].index}: {exc.detail}; nothing was imported", lines
                ) from None
            report.customers_created += sum(created for _, created in results)
            report.accepted += len(results)
            if progress:
                progress(len(part))
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
