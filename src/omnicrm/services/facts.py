"""Gathering what the decision engine needs about many people at once (a few queries per batch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from omnicrm.domain.consent import ConsentEntry, current_consents
from omnicrm.domain.facts import CustomerFacts, EventFacts, InstanceFacts
from omnicrm.domain.policy import Policy
from omnicrm.store import conversations
from omnicrm.store.profiles import chunks
from omnicrm.store.tables import consents, customers, products, segments

_DECLINE_MEMORY = timedelta(days=365)


def _rows(conn: Connection, table: Any, column: Any, ids: list[str]) -> list[Any]:
    found: list[Any] = []
    for part in chunks(ids):
        found.extend(conn.execute(select(table).where(column.in_(part))))
    return found


def event_facts(row: dict[str, Any]) -> EventFacts:
    return EventFacts(row["event_id"], row["type"], row["occurred_at"], row["channel"], row["attributes"])


def instance_facts(row: dict[str, Any]) -> InstanceFacts:
    return InstanceFacts(
        row["scenario_id"],
        row["scenario_version"],
        row["purpose"],
        row["status"],
        row["started_at"],
        row["ended_at"],
        row["goal_reached"],
    )


def load_facts(
    conn: Connection,
    customer_ids: Iterable[str],
    *,
    now: datetime,
    policy: Policy,
    instance_rows: list[dict[str, Any]] | None = None,
    until: datetime | None = None,
) -> dict[str, CustomerFacts]:
    """CustomerFacts for every live customer among `customer_ids` (instances may be passed in;
    `until` leaves out events and contacts after it, for a replay on a simulated clock)."""
    ids = sorted(set(customer_ids))
    people = {r.id: r for r in _rows(conn, customers, customers.c.id, ids)}
    tags: dict[str, set[str]] = defaultdict(set)
    for r in _rows(conn, segments, segments.c.customer_id, ids):
        tags[r.customer_id].add(r.segment)
    ledger: dict[str, list[ConsentEntry]] = defaultdict(list)
    for r in _rows(conn, consents, consents.c.customer_id, ids):
        ledger[r.customer_id].append(
            ConsentEntry(r.channel, r.purpose, r.granted, r.legal_basis, r.source, r.effective_at)
        )
    held: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in _rows(conn, products, products.c.customer_id, ids):
        held[r.customer_id].append((r.product_class, r.state))
    recent: dict[str, list[EventFacts]] = defaultdict(list)
    for r in conversations.events_of(
        conn, ids, now - timedelta(days=policy.interest_window_days), until=until
    ):
        recent[r["customer_id"]].append(event_facts(r))
    declines: dict[str, dict[str, datetime]] = defaultdict(dict)
    for r in conversations.events_of(
        conn, ids, now - _DECLINE_MEMORY, types=("crm.offer.declined",), until=until
    ):
        product_class = str(r["attributes"].get("product_class", ""))
        held_at = declines[r["customer_id"]].get(product_class, r["occurred_at"])
        declines[r["customer_id"]][product_class] = max(held_at, r["occurred_at"])
    contacts: dict[str, list[tuple[str, str, datetime]]] = defaultdict(list)
    for r in conversations.recent_contacts(conn, ids, now - timedelta(days=7), until=until):
        contacts[r["customer_id"]].append((r["channel"], r["purpose"], r["created_at"]))
    runs: dict[str, list[InstanceFacts]] = defaultdict(list)
    for r in conversations.instances_of(conn, ids) if instance_rows is None else instance_rows:
        runs[r["customer_id"]].append(instance_facts(r))
    return {
        cid: _customer(
            row, tags[cid], ledger[cid], held[cid], declines[cid], recent[cid], contacts[cid], runs[cid], now
        )
        for cid, row in people.items()
        if row.merged_into is None
    }


def _customer(
    row: Any,
    tags: set[str],
    ledger: list[ConsentEntry],
    held: list[tuple[str, str]],
    declines: dict[str, datetime],
    recent: list[EventFacts],
    contacts: list[tuple[str, str, datetime]],
    runs: list[InstanceFacts],
    now: datetime,
) -> CustomerFacts:
    state = current_consents(ledger, is_client=row.status == "client", now=now)
    window = (row.contact_window_start, row.contact_window_end)
    return CustomerFacts(
        id=row.id,
        status=row.status,
        value_tier=row.value_tier,
        language=row.language,
        timezone=row.timezone,
        segments=frozenset(tags),
        do_not_contact=row.do_not_contact,
        vulnerable=row.vulnerable,
        fraud_case_open=row.fraud_case_open,
        open_complaints=row.open_complaints,
        channel_blacklist=frozenset(row.channel_blacklist or ()),
        consents={key: s.granted for key, s in state.items()},
        products=tuple(held),
        preferred_channel=row.preferred_channel,
        contact_window=window if None not in window else None,
        declines=declines,
        recent_events=tuple(recent),
        contacts=tuple(contacts),
        instances=tuple(runs),
    )
