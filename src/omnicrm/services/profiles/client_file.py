"""The client file as operators and the API read it: profile, identifiers, consent state and
ledger, products, relationships, merges; and the look-up of a caller by any identifier."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.consent import ConsentEntry, current_consents
from omnicrm.domain.errors import InvalidInput, ItemError, NotFound
from omnicrm.domain.identifiers import InvalidIdentifier, normalise
from omnicrm.services.profiles.customers import live_id
from omnicrm.store import merging, profiles

# The fields of each part of the client file, as the API shows them.
_PERSON = (
    "first_name",
    "middle_name",
    "last_name",
    "date_of_birth",
    "language",
    "timezone",
    "branch",
    "relationship_manager",
    "value_tier",
)
_PREFERENCES = ("preferred_channel", "contact_window_start", "contact_window_end")
_CONSTRAINTS = ("do_not_contact", "vulnerable", "fraud_case_open", "channel_blacklist", "open_complaints")
_PRODUCT = (
    "product_class",
    "contract_number",
    "state",
    "opened_at",
    "closed_at",
    "maturity_date",
    "terms",
    "state_changed_at",
)
_LEDGER = (
    "id",
    "channel",
    "purpose",
    "granted",
    "legal_basis",
    "source",
    "effective_at",
    "recorded_at",
    "recorded_by",
)


def consents_view(conn: Connection, customer_id: str) -> dict[str, Any]:
    """The consent ledger and the state derived from it."""
    customer_id = live_id(conn, customer_id)
    row = profiles.get_customer(conn, customer_id) or {}
    ledger = profiles.consent_ledger(conn, customer_id)
    entries = [
        ConsentEntry(
            e["channel"], e["purpose"], e["granted"], e["legal_basis"], e["source"], e["effective_at"]
        )
        for e in ledger
    ]
    state = current_consents(entries, is_client=row.get("status") == "client", now=datetime.now(UTC))
    return {
        "customer_id": customer_id,
        "current": [
            {
                "channel": s.channel,
                "purpose": s.purpose,
                "granted": s.granted,
                "legal_basis": s.legal_basis,
                "source": s.source,
                "since": s.since,
            }
            for s in state.values()
        ],
        "ledger": [{k: e[k] for k in _LEDGER} for e in ledger],
    }


def profile(conn: Connection, customer_id: str) -> dict[str, Any]:
    """The whole client file: profile, identifiers, consent state, products, relationships."""
    requested = customer_id
    customer_id = live_id(conn, customer_id)
    row = profiles.get_customer(conn, customer_id)
    if row is None:
        raise NotFound(f"customer {requested} does not exist")
    rels = profiles.relationships_of(conn, customer_id)
    roots = profiles.root_of(conn, [r["related_id"] for r in rels])
    return {
        "id": customer_id,
        "requested_id": requested,
        "status": row["status"],
        **{k: row[k] for k in _PERSON},
        "preferences": {k: row[k] for k in _PREFERENCES},
        "constraints": {k: row[k] for k in _CONSTRAINTS},
        "segments": profiles.segments_of(conn, customer_id),
        "identifiers": [
            {"kind": i["kind"], "value": i["value"]} for i in profiles.identifiers_of(conn, customer_id)
        ],
        "consents": consents_view(conn, customer_id)["current"],
        "products": [{k: p[k] for k in _PRODUCT} for p in profiles.products_of(conn, customer_id)],
        "relationships": [
            {"kind": r["kind"], "related_id": roots.get(r["related_id"], r["related_id"]), "note": r["note"]}
            for r in rels
        ],
        "merged_from": [
            m["merged_id"] for m in merging.merges_into(conn, customer_id) if m["undone_at"] is None
        ],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
    }


def lookup(conn: Connection, kind: str, value: str) -> str:
    """The live customer holding an identifier (one indexed query), or NotFound."""
    try:
        pair = (kind, normalise(kind, value))
    except InvalidIdentifier as exc:
        raise InvalidInput("invalid identifier", [ItemError(None, "value", str(exc))]) from None
    owner = profiles.owners_of(conn, [pair]).get(pair)
    if owner is None:
        raise NotFound(f"no customer has {kind} {pair[1]}")
    return owner[0]
