"""Profiles from import files, in bulk: each line validated once (`prepare_line`, in the reading
process for big files), then a chunk's new people written with one statement per table.

A profile whose identifiers, contracts or related person are already known (in the database or
earlier in the same chunk) goes through the ordinary `customers.upsert`, which updates or merges:
the line is validated again into a `CustomerIn` for it, from its JSON (`Prepared.source`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import orjson
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from omnicrm.domain.errors import DomainError, InvalidInput, ItemError
from omnicrm.domain.pan import contains_pan, find_pan_paths
from omnicrm.domain.privacy import ErasedSubject
from omnicrm.domain.vocabulary import CLIENT_STATES
from omnicrm.services.contracts import CustomerIn
from omnicrm.services.profiles import customers
from omnicrm.services.profiles.identity import new_customer_id
from omnicrm.store import erasure, profiles

Pair = tuple[str, str]
_R = TypeVar("_R")


class Prepared(NamedTuple):
    """One valid profile line, in plain values (cheap to send from the reading process)."""

    source: bytes  # the line as JSON: validated again only if it goes through `customers.upsert`
    pairs: list[Pair]  # its identifiers, normalised
    related: list[Pair]  # the identifier of each relationship's related person, normalised
    # the profile's columns (`customers.profile_values`), status "client" if a product says so
    values: dict[str, Any]
    segments: list[str]
    consents: list[dict[str, Any]]  # ConsentIn.model_dump() each
    products: list[dict[str, Any]]  # ProductIn.model_dump() each
    relationships: list[tuple[str, str | None]]  # (kind, note) each


def prepare_line(raw: Any, number: int) -> Prepared | list[ItemError]:
    """Validate one parsed line (the card-number scan, the schema, identifier formats, lifecycle
    states): the profile, or every problem found, each with the line `number`."""
    source = orjson.dumps(raw, default=str)
    # One scan of the serialised line (JSON punctuation keeps fields apart); paths only on a hit.
    pans = list(find_pan_paths(raw)) if contains_pan(source.decode()) else []
    if pans:
        return [ItemError(number, p, "looks like a payment card number") for p in pans]
    try:
        item = CustomerIn.model_validate(raw)
    except ValidationError as exc:
        return [
            ItemError(number, ".".join(str(p) for p in e["loc"]), e["msg"])
            for e in exc.errors(include_url=False)
        ]
    problems: list[ItemError] = []
    pairs = _checked(problems, number, customers.normalise_pairs, item.identifiers)
    _checked(problems, number, customers.check_products, item.products)
    related = [
        _checked(problems, number, customers.normalise_pairs, [r.related], f"relationships[{i}].related")
        for i, r in enumerate(item.relationships)
    ]
    if problems:
        return problems
    values = customers.profile_values(item)
    if any(p.state in CLIENT_STATES for p in item.products):
        values["status"] = "client"
    return Prepared(
        source,
        pairs or [],
        [r[0] for r in related if r],
        values,
        sorted(set(item.segments)),
        [c.model_dump() for c in item.consents],
        [p.model_dump() for p in item.products],
        [(r.kind, r.note) for r in item.relationships],
    )


def _checked(problems: list[ItemError], number: int, check: Callable[..., _R], *args: Any) -> _R | None:
    """`check(*args)`, or None with its problems added to `problems` under the line `number`."""
    try:
        return check(*args)
    except InvalidInput as exc:
        problems.extend(ItemError(number, e.field, e.reason) for e in exc.errors)
        return None


@dataclass
class _Pending:
    """Rows of new profiles not yet written."""

    blank: dict[str, Any]  # a new profile's `customers` row with no values given, its NULLs left out
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


def _contracts(item: Prepared) -> set[tuple[str, str]]:
    return {(p["product_class"], p["contract_number"]) for p in item.products}


def _held_pairs(item: Prepared, contracts: set[tuple[str, str]]) -> list[Pair]:
    """The identifiers a line's profile holds once written: its own, and its products' contract
    numbers (`profiles.insert_products` registers each as a `contract` identifier unless one exists)."""
    return [*item.pairs, *(("contract", number) for _, number in contracts)]


def upsert_many(
    conn: Connection, items: list[tuple[int, Prepared]], *, actor: str, now: datetime
) -> list[tuple[str, bool]]:
    """Create or update the profile of each (line, prepared line); returns (id, created) per item,
    in order. A refusal (a contract of another person, an unknown related person) is an
    InvalidInput whose errors carry the line."""
    _refuse_erased(conn, items)
    known = {
        p: owner
        for p, (owner, _) in profiles.owners_of(
            conn, [p for _, item in items for p in (*item.pairs, *item.related)]
        ).items()
    }
    held = set(profiles.products_by_contract(conn, [c for _, item in items for c in _contracts(item)]))
    blank = {k: v for k, v in customers.new_customer_row("", {}, now).items() if v is not None}
    pending = _Pending(blank)
    results: list[tuple[str, bool]] = []
    for line, item in items:
        try:
            results.append(_one(conn, pending, item, known, held, actor=actor, now=now))
        except DomainError as exc:
            found = getattr(exc, "errors", []) or [ItemError(line, "(item)", exc.detail)]
            raise InvalidInput(exc.detail, [ItemError(line, e.field, e.reason) for e in found]) from None
    pending.flush(conn)
    return results


def _refuse_erased(conn: Connection, items: list[tuple[int, Prepared]]) -> None:
    """A line naming an erased person's identifier is refused (it would bring them back)."""
    erased = erasure.erased_among(conn, (p for _, item in items for p in item.pairs))
    if erased:
        reason = "names a person whose data was erased"
        raise ErasedSubject(
            [ItemError(line, "identifiers", reason) for line, item in items if erased & set(item.pairs)]
        )


def _one(
    conn: Connection,
    pending: _Pending,
    item: Prepared,
    known: dict[Pair, str],
    held: set[tuple[str, str]],
    *,
    actor: str,
    now: datetime,
) -> tuple[str, bool]:
    """Stage a new profile, or flush and go through the ordinary upsert when anything is known."""
    contracts = _contracts(item)
    clash = any(p in known or p in pending.owners for p in item.pairs) or any(
        c in held or c in pending.contracts for c in contracts
    )
    if clash or any(r not in known and r not in pending.owners for r in item.related):
        pending.flush(conn)
        data = CustomerIn.model_validate(orjson.loads(item.source))
        customer_id, created = customers.upsert(conn, data, actor=actor, now=now, audited=False)
        known.update(dict.fromkeys(_held_pairs(item, contracts), customer_id))
        held |= contracts
        return customer_id, created
    customer_id = new_customer_id()
    related = [known.get(r) or pending.owners[r] for r in item.related]
    _stage(pending, item, customer_id, related, actor, now)
    pending.owners.update(dict.fromkeys(_held_pairs(item, contracts), customer_id))
    pending.contracts |= contracts
    return customer_id, True


def _stage(
    pending: _Pending,
    item: Prepared,
    cid: str,
    related: list[str],
    actor: str,
    now: datetime,
) -> None:
    """The rows of a new profile, as `customers.upsert` writes them (`customers.new_customer_row`,
    `consent_row`, `product_row`, `relationship_row`, from the prepared values)."""
    t = pending.tables
    t["customers"].append({**pending.blank, **item.values, "id": cid})
    t["identifiers"].extend(
        {"kind": k, "value": v, "customer_id": cid, "origin_id": cid, "created_at": now}
        for k, v in item.pairs
    )
    t["segments"].extend({"customer_id": cid, "segment": s} for s in item.segments)
    t["consents"].extend(
        {
            **c,
            "customer_id": cid,
            "origin_id": cid,
            "effective_at": c["effective_at"] or now,
            "recorded_at": now,
            "recorded_by": actor,
        }
        for c in item.consents
    )
    t["products"].extend(
        {**p, "customer_id": cid, "origin_id": cid, "state_changed_at": now} for p in item.products
    )
    t["relationships"].extend(
        {
            "customer_id": cid,
            "origin_id": cid,
            "related_id": rid,
            "kind": kind,
            "note": note,
            "created_at": now,
        }
        for (kind, note), rid in zip(item.relationships, related, strict=True)
    )
