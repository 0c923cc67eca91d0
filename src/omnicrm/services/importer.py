"""File import (JSON Lines or CSV) of customers, events and interactions.

A file is one batch: every line is validated first and, if any is wrong, nothing is written and
every problem is reported with its line number. Then the whole file is written in one
transaction (in chunks of 1,000 events, for the progress bar). A re-run is safe: events are
idempotent by event_id and profiles by identifier.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.domain.pan import find_pan_paths
from omnicrm.services import bulk_profiles, customers, ingest
from omnicrm.services.contracts import CustomerIn
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


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row to the JSON shape: `identifiers.<kind>` columns, `attributes` as a JSON object."""
    item: dict[str, Any] = {}
    for key, value in row.items():
        if value in ("", None):
            continue
        if key.startswith("identifiers."):
            item.setdefault("identifiers", {})[key.removeprefix("identifiers.")] = value
        elif key == "attributes":
            item["attributes"] = orjson.loads(value)
        else:
            item[key] = value
    return item


def read_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each record of a .jsonl/.ndjson or .csv file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    yield number, _csv_row(row)
                except orjson.JSONDecodeError as exc:
                    yield number, ItemError(number, "attributes", f"not a JSON object: {exc}")
        return
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise InvalidInput("unknown file type", [ItemError(None, "file", "use .jsonl, .ndjson or .csv")])
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield number, ItemError(number, "(line)", f"not JSON: {exc}")


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
) -> ImportReport:
    """Validate every line, then write all events in one transaction; errors carry line numbers."""
    prepared: list[ingest.Prepared] = []
    line_of: list[int] = []
    errors: list[ItemError] = []
    total = 0
    for number, raw in read_lines(path):
        total += 1
        if isinstance(raw, ItemError):
            errors.append(raw)
            continue
        result = ingest.prepare_one(raw, number, catalogue, kinds)
        if isinstance(result, list):
            errors.extend(result)
        else:
            prepared.append(result)
            line_of.append(number)
    _fail(errors, total)
    report = ImportReport(lines=total)
    with uow_factory() as uow:
        given = {p.customer_id for p in prepared if p.customer_id}
        known = profiles.root_of(uow.conn, given)
        errors = [
            ItemError(line, "customer_id", "no such customer")
            for p, line in zip(prepared, line_of, strict=True)
            if p.customer_id and p.customer_id not in known
        ]
        _fail(errors, total)
        for start in range(0, len(prepared), CHUNK):
            part = prepared[start : start + CHUNK]
            written = ingest.ingest(uow.conn, part, actor=actor, now=datetime.now(UTC))
            report.accepted += written.accepted
            report.duplicates += written.duplicates
            report.customers_created += written.customers_created
            report.merges += written.merges
            if progress:
                progress(len(part))
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


def count_records(path: Path) -> int:
    """Number of records in a file (for the progress bar)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines
