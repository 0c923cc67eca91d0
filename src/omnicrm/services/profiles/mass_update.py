"""Mass update of one or more fields for a filtered set of profiles, with a dry-run count."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, insert, select, update
from sqlalchemy.engine import Connection

from omnicrm.domain.errors import InvalidInput, ItemError
from omnicrm.services.contracts import MassUpdateFilter, MassUpdateIn
from omnicrm.store import audit
from omnicrm.store.profiles import chunks
from omnicrm.store.tables import customers, products, segments


def _where(f: MassUpdateFilter) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = [customers.c.merged_into.is_(None)]
    for name in ("status", "value_tier", "branch", "language"):
        value = getattr(f, name)
        if value is not None:
            clauses.append(customers.c[name] == value)
    if f.segment is not None:
        clauses.append(
            exists().where(segments.c.customer_id == customers.c.id, segments.c.segment == f.segment)
        )
    if f.has_product is not None:
        clauses.append(
            exists().where(
                products.c.customer_id == customers.c.id,
                products.c.product_class == f.has_product,
                products.c.state != "closed",
            )
        )
    return clauses


def mass_update(conn: Connection, request: MassUpdateIn, *, actor: str, now: datetime) -> dict[str, Any]:
    """Count (dry run) or update every live profile matching the filter; audited when applied."""
    changes = request.set.model_dump(exclude_none=True)
    if not changes:
        raise InvalidInput("nothing to set", [ItemError(None, "set", "give at least one field to set")])
    # The matching ids are fixed first, so removing a segment or changing a filtered field
    # cannot change which profiles the rest of the update touches.
    ids = list(conn.execute(select(customers.c.id).where(*_where(request.filter))).scalars())
    matched = len(ids)
    if request.dry_run:
        return {"dry_run": True, "matched": matched, "updated": 0, "set": changes}
    add, remove = changes.pop("add_segment", None), changes.pop("remove_segment", None)
    for part in chunks(ids):
        if remove:
            conn.execute(
                delete(segments).where(segments.c.segment == remove, segments.c.customer_id.in_(part))
            )
        if add:
            have = set(
                conn.execute(
                    select(segments.c.customer_id).where(
                        segments.c.segment == add, segments.c.customer_id.in_(part)
                    )
                ).scalars()
            )
            rows = [{"customer_id": cid, "segment": add} for cid in part if cid not in have]
            if rows:
                conn.execute(insert(segments), rows)
        if changes:
            conn.execute(
                update(customers)
                .where(customers.c.id.in_(part))
                .values(**changes, updated_at=now, version=customers.c.version + 1)
            )
    audit.append(
        conn,
        at=now,
        actor=actor,
        action="customer.mass_update",
        target=None,
        details={
            "filter": request.filter.model_dump(exclude_none=True),
            "set": request.set.model_dump(exclude_none=True),
            "matched": matched,
            "reason": request.reason,
        },
    )
    return {
        "dry_run": False,
        "matched": matched,
        "updated": matched,
        "set": request.set.model_dump(exclude_none=True),
    }
