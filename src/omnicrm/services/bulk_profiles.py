"""Bulk creation of profiles for imports: new people cost one statement per table per chunk.

A profile whose identifiers, contracts or related person are already known (in the database or
earlier in the same chunk) goes through the ordinary `customers.upsert`, which updates or merges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.errors import DomainError, InvalidInput, ItemError
from omnicrm.domain.vocabulary import CLIENT_STATES
from omnicrm.services import customers
from omnicrm.services.contracts import CustomerIn
from omnicrm.services.identity import new_customer_id
from omnicrm.store import profiles

Pair = tuple[str, str]


@dataclass
class _Pending:
    """Rows of new profiles not yet written."""

    owners: dict[Pair, str] = field(default_factory=dict)
    contracts: set[tuple[str, str]] = field(default_factory=set)
    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {
            n: [] for n in ("customers", "identifiers", "segments", "consents", "products", "relationships")
        }
    )

    def flush(self, conn: Connection) -> None:
        t = self.tables
        profiles.insert_customers(conn, t["customers"])
        profiles.insert_identifiers(conn, t["identifiers"])
        profiles.insert_segments(conn, t["segments"])
        profiles.append_consents(conn, t["consents"])
        profiles.insert_products(conn, t["products"])
        profiles.insert_relationships(conn, t["relationships"])
        for rows in t.values():
            rows.clear()


def upsert_many(
    conn: Connection, items: list[CustomerIn], *, actor: str, now: datetime
) -> list[tuple[str, bool]]:
    """Create or update each profile; returns (id, created) per item, in order."""
    pairs = [customers.normalise_pairs(item.identifiers) for item in items]
    related = [[customers.normalise_pairs([r.related])[0] for r in item.relationships] for item in items]
    known = {
        p: owner
        for p, (owner, _) in profiles.owners_of(conn, [p for group in pairs + related for p in group]).items()
    }
    held = set(
        profiles.products_by_contract(
            conn, [(p.product_class, p.contract_number) for i in items for p in i.products]
        )
    )
    pending = _Pending()
    results: list[tuple[str, bool]] = []
    for index, (item, own, rel) in enumerate(zip(items, pairs, related, strict=True)):
        try:
            customer_id, created = _one(conn, pending, item, own, rel, known, held, actor=actor, now=now)
        except DomainError as exc:
            found = getattr(exc, "errors", []) or [ItemError(index, "(item)", exc.detail)]
            raise InvalidInput(exc.detail, [ItemError(index, e.field, e.reason) for e in found]) from None
        results.append((customer_id, created))
    pending.flush(conn)
    return results


def _one(
    conn: Connection,
    pending: _Pending,
    item: CustomerIn,
    own: list[Pair],
    rel: list[Pair],
    known: dict[Pair, str],
    held: set[tuple[str, str]],
    *,
    actor: str,
    now: datetime,
) -> tuple[str, bool]:
    """Stage a new profile, or flush and go through the ordinary upsert when anything is known."""
    customers.check_products(item.products)
    contracts = {(p.product_class, p.contract_number) for p in item.products}
    clash = any(p in known or p in pending.owners for p in own) or bool(
        contracts & (held | pending.contracts)
    )
    if clash or any(r not in known and r not in pending.owners for r in rel):
        pending.flush(conn)
        customer_id, created = customers.upsert(conn, item, actor=actor, now=now, audited=False)
        known.update(dict.fromkeys(own, customer_id))
        held |= contracts
        return customer_id, created
    customer_id = new_customer_id()
    _stage(pending, item, customer_id, own, [known.get(r) or pending.owners[r] for r in rel], actor, now)
    pending.owners.update(dict.fromkeys(own, customer_id))
    pending.contracts |= contracts
    return customer_id, True


def _stage(
    pending: _Pending,
    item: CustomerIn,
    cid: str,
    own: list[Pair],
    related: list[str],
    actor: str,
    now: datetime,
) -> None:
    t = pending.tables
    values = customers.profile_values(item)
    if any(p.state in CLIENT_STATES for p in item.products):
        values["status"] = "client"
    t["customers"].append(customers.new_customer_row(cid, values, now))
    t["identifiers"].extend(
        {"kind": k, "value": v, "customer_id": cid, "origin_id": cid, "created_at": now} for k, v in own
    )
    t["segments"].extend({"customer_id": cid, "segment": s} for s in sorted(set(item.segments)))
    t["consents"].extend(customers.consent_row(cid, c, actor=actor, now=now) for c in item.consents)
    t["products"].extend(customers.product_row(cid, p, now) for p in item.products)
    t["relationships"].extend(
        customers.relationship_row(cid, r, rid, now)
        for r, rid in zip(item.relationships, related, strict=True)
    )
