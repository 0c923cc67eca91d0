"""Profile use cases: create-or-update by identifiers, patch, identifiers, consent, products (the
read side, the whole client file, is in `client_file.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.errors import Conflict, InvalidInput, ItemError, NotFound
from omnicrm.domain.identifiers import InvalidIdentifier, normalise
from omnicrm.domain.privacy import ERASED, ErasedSubject
from omnicrm.domain.vocabulary import CLIENT_STATES, PRODUCT_STATES
from omnicrm.services.contracts import (
    ConsentIn,
    CustomerFields,
    CustomerIn,
    CustomerPatch,
    IdentifierIn,
    ProductIn,
    RelationshipIn,
)
from omnicrm.services.profiles.identity import hold_live, merge_all, merge_pair, new_customer_id
from omnicrm.store import audit, dispatch, erasure, profiles, timeline
from omnicrm.store.tables import customers as customers_table

Pair = tuple[str, str]
_FIELDS = tuple(CustomerFields.model_fields)


def normalise_pairs(items: list[IdentifierIn], prefix: str = "identifiers") -> list[Pair]:
    """Canonical (kind, value) pairs, or InvalidInput naming every bad one."""
    pairs: list[Pair] = []
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        try:
            pairs.append((item.kind, normalise(item.kind, item.value)))
        except InvalidIdentifier as exc:
            errors.append(ItemError(None, f"{prefix}[{i}].value", f"{item.kind}: {exc}"))
    if errors:
        raise InvalidInput("some identifiers are not valid", errors)
    return list(dict.fromkeys(pairs))


def resolve_owner(conn: Connection, pairs: list[Pair], *, actor: str, now: datetime) -> str | None:
    """The one live profile these identifiers point to, merging profiles when they point to several."""
    refuse_erased(conn, pairs)
    owners = list(dict.fromkeys(cid for cid, _ in profiles.owners_of(conn, pairs).values()))
    if not owners:
        return None
    if len(owners) == 1:
        return held_id(conn, owners[0])
    return merge_all(conn, owners, reason="identifiers point to one person", actor=actor, now=now)


def refuse_erased(conn: Connection, pairs: list[Pair], prefix: str = "identifiers") -> None:
    """ErasedSubject if any of these identifiers belonged to a person whose data was erased."""
    erased = erasure.erased_among(conn, pairs)
    if erased:
        errors = [
            ItemError(None, f"{prefix}[{i}]", f"{kind}: names a person whose data was erased")
            for i, (kind, value) in enumerate(pairs)
            if (kind, value) in erased
        ]
        raise ErasedSubject(errors)


def profile_values(data: CustomerFields | CustomerPatch) -> dict[str, Any]:
    values = {k: v for k, v in data.model_dump(exclude_unset=True).items() if k in _FIELDS}
    prefs = getattr(data, "preferences", None)
    if prefs is not None:
        for key, value in prefs.model_dump(exclude_unset=True).items():
            values["language" if key == "language" else key] = value
    constraints = getattr(data, "constraints", None)
    if constraints is not None:
        values.update({k: v for k, v in constraints.model_dump(exclude_unset=True).items() if v is not None})
    return values


def new_customer_row(customer_id: str, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A complete `customers` row for a new profile (every column, so rows can share one executemany)."""
    return {
        **dict.fromkeys(customers_table.c.keys()),
        "status": "prospect",
        "do_not_contact": False,
        "vulnerable": False,
        "fraud_case_open": False,
        "channel_blacklist": [],
        "open_complaints": 0,
        **values,
        "id": customer_id,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


def consent_row(customer_id: str, consent: ConsentIn, *, actor: str, now: datetime) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "origin_id": customer_id,
        "channel": consent.channel,
        "purpose": consent.purpose,
        "granted": consent.granted,
        "legal_basis": consent.legal_basis,
        "source": consent.source,
        "effective_at": consent.effective_at or now,
        "recorded_at": now,
        "recorded_by": actor,
    }


def product_row(customer_id: str, product: ProductIn, now: datetime) -> dict[str, Any]:
    return {
        **product.model_dump(),
        "customer_id": customer_id,
        "origin_id": customer_id,
        "state_changed_at": now,
    }


def relationship_row(customer_id: str, rel: RelationshipIn, related_id: str, now: datetime) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "origin_id": customer_id,
        "related_id": related_id,
        "kind": rel.kind,
        "note": rel.note,
        "created_at": now,
    }


def upsert(
    conn: Connection, data: CustomerIn, *, actor: str, now: datetime, audited: bool = True
) -> tuple[str, bool]:
    """Create the profile, or update the one its identifiers resolve to; returns (id, created)."""
    pairs = normalise_pairs(data.identifiers)
    customer_id = resolve_owner(conn, pairs, actor=actor, now=now)
    values = profile_values(data)
    created = customer_id is None
    if customer_id is None:
        customer_id = new_customer_id()
        profiles.insert_customers(conn, [new_customer_row(customer_id, values, now)])
    else:
        profiles.update_customer(conn, customer_id, values, now)
    known = profiles.owners_of(conn, pairs)
    profiles.insert_identifiers(
        conn,
        [
            {"kind": k, "value": v, "customer_id": customer_id, "origin_id": customer_id, "created_at": now}
            for k, v in pairs
            if (k, v) not in known
        ],
    )
    if data.segments:
        profiles.add_segments(conn, customer_id, data.segments)
    for consent in data.consents:
        record_consent(conn, customer_id, consent, actor=actor, now=now, audited=audited)
    upsert_products(conn, customer_id, data.products, now=now)
    add_relationships(conn, customer_id, data.relationships, now=now)
    if audited:
        action = "customer.created" if created else "customer.updated"
        audit.append(
            conn, at=now, actor=actor, action=action, target=customer_id, details={"fields": sorted(values)}
        )
    return customer_id, created


def live_id(conn: Connection, customer_id: str) -> str:
    """The live profile behind an id (following merges), or NotFound."""
    root = profiles.root_of(conn, [customer_id]).get(customer_id)
    if root is None:
        raise NotFound(f"customer {customer_id} does not exist")
    return root


def held_id(conn: Connection, customer_id: str) -> str:
    """The live profile behind an id (following merges), kept from being merged away until the
    transaction ends: the profile a writer may attach rows to. NotFound if there is none."""
    root = hold_live(conn, [customer_id]).get(customer_id)
    if root is None:
        raise NotFound(f"customer {customer_id} does not exist")
    if (profiles.get_customer(conn, root) or {}).get("status") == ERASED:
        raise Conflict(f"customer {customer_id} was erased: nothing more is written to their profile")
    return root


def patch(conn: Connection, customer_id: str, data: CustomerPatch, *, actor: str, now: datetime) -> str:
    """Update the given fields of a profile; audited with the field names.

    The id of a profile merged away (even while this waited for it) stands for its survivor, as it
    does for every read: the two are one person, and a bank's other systems keep sending the ids
    they know. The survivor is updated, never the merged-away profile, whose row is only the record
    an unmerge restores; the audit entry names the id that was asked for."""
    requested = customer_id
    customer_id = held_id(conn, customer_id)
    values = profile_values(data)
    if any(values.get(flag) for flag in ("do_not_contact", "fraud_case_open", "open_complaints")):
        dispatch.fence(conn, [customer_id])  # as a consent withdrawal: no send starts after this commits
    profiles.update_customer(conn, customer_id, values, now)
    if data.segments is not None:
        profiles.set_segments(conn, customer_id, data.segments)
        values["segments"] = data.segments
    details: dict[str, Any] = {"fields": sorted(values)}
    if requested != customer_id:
        details["requested_id"] = requested
    audit.append(conn, at=now, actor=actor, action="customer.updated", target=customer_id, details=details)
    return customer_id


def add_identifier(
    conn: Connection, customer_id: str, item: IdentifierIn, *, actor: str, now: datetime
) -> str:
    """Attach an identifier; if another profile holds it, the two merge. Returns the live id."""
    pair = normalise_pairs([item], prefix="identifier")[0]
    refuse_erased(conn, [pair], prefix="identifier")
    owner = profiles.owners_of(conn, [pair]).get(pair)
    if owner is not None and owner[0] != customer_id:
        # a merge locks its profiles itself, after queueing behind the other merges
        return merge_pair(
            conn, customer_id, owner[0], reason=f"shared identifier {pair[0]}", actor=actor, now=now
        )
    customer_id = held_id(conn, customer_id)
    if owner is None:
        profiles.insert_identifiers(
            conn,
            [
                {
                    "kind": pair[0],
                    "value": pair[1],
                    "customer_id": customer_id,
                    "origin_id": customer_id,
                    "created_at": now,
                }
            ],
        )
    return customer_id


def record_consent(
    conn: Connection, customer_id: str, consent: ConsentIn, *, actor: str, now: datetime, audited: bool = True
) -> None:
    """Append one grant or withdrawal to the consent ledger (never overwrites). A withdrawal first
    waits for any send to this person in flight (store/dispatch.fence): once it commits, no message
    it forbids starts."""
    if not consent.granted:
        dispatch.fence(conn, [customer_id])
    row = consent_row(customer_id, consent, actor=actor, now=now)
    profiles.append_consents(conn, [row])
    if audited:
        details = {k: row[k] for k in ("channel", "purpose", "granted", "legal_basis", "source")}
        audit.append(conn, at=now, actor=actor, action="consent.changed", target=customer_id, details=details)


def check_products(items: list[ProductIn]) -> None:
    """Every product's state must be a lifecycle state of its class."""
    errors = [
        ItemError(None, f"products[{i}].state", f"{p.state!r} is not a lifecycle state of {p.product_class}")
        for i, p in enumerate(items)
        if p.state not in PRODUCT_STATES[p.product_class]
    ]
    if errors:
        raise InvalidInput("some products are not valid", errors)


def upsert_products(conn: Connection, customer_id: str, items: list[ProductIn], *, now: datetime) -> None:
    """Create or update products by (class, contract number); a contract of another person is refused."""
    check_products(items)
    existing = profiles.products_by_contract(conn, [(p.product_class, p.contract_number) for p in items])
    new_rows = []
    for p in items:
        values = p.model_dump(exclude={"product_class", "contract_number"})
        held = existing.get((p.product_class, p.contract_number))
        if held is None:
            new_rows.append(product_row(customer_id, p, now))
        elif held["customer_id"] != customer_id:
            raise Conflict(f"contract {p.contract_number} belongs to another customer")
        else:
            profiles.update_product(conn, held["id"], {**values, "state_changed_at": now})
    profiles.insert_products(conn, new_rows)
    if any(p.state in CLIENT_STATES for p in items):
        timeline.promote_to_client(conn, [customer_id], now)


def add_relationships(
    conn: Connection, customer_id: str, items: list[RelationshipIn], *, now: datetime
) -> None:
    """Link this person to others found by an identifier (household, spouse, employer...)."""
    rows = []
    for i, rel in enumerate(items):
        pair = normalise_pairs([rel.related], prefix=f"relationships[{i}].related")[0]
        owner = profiles.owners_of(conn, [pair]).get(pair)
        if owner is None:
            raise InvalidInput(
                "related person not found",
                [ItemError(None, f"relationships[{i}].related", "no profile has this identifier")],
            )
        rows.append(relationship_row(customer_id, rel, owner[0], now))
    profiles.insert_relationships(conn, rows)
