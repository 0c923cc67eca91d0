"""Gathering what the decision engine needs about many people at once (a few queries per batch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from omnicrm.domain.consent import ConsentEntry, granted_consents
from omnicrm.domain.facts import CustomerFacts, EventFacts, InstanceFacts
from omnicrm.domain.policy import Policy
from omnicrm.store import bulk, conversations, profiles
from omnicrm.store.tables import consents, customers, products, segments

DECLINE_MEMORY = timedelta(days=365)
DECLINED = "crm.offer.declined"
CONTACT_MEMORY_DAYS = 7  # the longest cap window (per week)
# a product in these states with a recent `opened_at` was just taken (not one first seen maturing, in
# arrears or closed): the acquisition cooling-off
TAKEN = frozenset({"active", "issued"})


# Only the columns the engine reads, as plain tuples: no whole rows, no per-row dicts.
_PERSON = (
    customers.c.id,
    customers.c.status,
    customers.c.value_tier,
    customers.c.language,
    customers.c.timezone,
    customers.c.do_not_contact,
    customers.c.vulnerable,
    customers.c.fraud_case_open,
    customers.c.open_complaints,
    customers.c.channel_blacklist,
    customers.c.preferred_channel,
    customers.c.contact_window_start,
    customers.c.contact_window_end,
    customers.c.merged_into,
)
_SEGMENTS = (segments.c.customer_id, segments.c.segment)
_LEDGER = (
    consents.c.customer_id,
    consents.c.channel,
    consents.c.purpose,
    consents.c.granted,
    consents.c.legal_basis,
    consents.c.source,
    consents.c.effective_at,
)
_PRODUCTS = (products.c.customer_id, products.c.product_class, products.c.state, products.c.opened_at)


_MERGED = (customers.c.id, customers.c.merged_into)


def _tuples(conn: Connection, columns: tuple[Any, ...], key: Any, ids: list[str]) -> list[Any]:
    """`columns` of the rows whose `key` is among `ids`; one statement per (columns, key) for good."""
    if not ids:
        return []
    dialect = conn.dialect.name
    query = profiles.shaped(
        ("facts", columns, key, dialect),
        lambda: select(*columns).where(profiles.among_bound(key, "ids")[dialect]),
    )
    return bulk.fetch(conn, query, {"ids": profiles.bound_values(conn, ids)})


def live_customers(conn: Connection, customer_ids: Iterable[str]) -> set[str]:
    """Those of `customer_ids` that exist and are not merged into another profile."""
    rows = _tuples(conn, _MERGED, customers.c.id, sorted(set(customer_ids)))
    return {cid for cid, merged in rows if merged is None}


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
    before: int | None = None,
) -> dict[str, CustomerFacts]:
    """CustomerFacts for every live customer among `customer_ids` (instances may be passed in;
    `until` leaves out events and contacts after it, for a replay on a simulated clock; `before`
    leaves out events stored from that primary key on: the history as the event queue had it there)."""
    ids = sorted(set(customer_ids))
    people = [r for r in _tuples(conn, _PERSON, customers.c.id, ids) if r[-1] is None]  # merged: skip
    live = [r[0] for r in people]
    tags: dict[str, set[str]] = defaultdict(set)
    for cid, segment in _tuples(conn, _SEGMENTS, segments.c.customer_id, live):
        tags[cid].add(segment)
    ledger: dict[str, list[ConsentEntry]] = defaultdict(list)
    for cid, channel, purpose, granted, basis, source, effective in _tuples(
        conn, _LEDGER, consents.c.customer_id, live
    ):
        ledger[cid].append(ConsentEntry(channel, purpose, granted, basis, source, effective))
    held, acquired = _holdings(conn, live, now, policy)
    recent: dict[str, list[EventFacts]] = defaultdict(list)
    since = now - timedelta(days=policy.interest_window_days)
    for cid, event_id, kind, at, channel, attributes in conversations.event_tuples(
        conn, live, since, until=until, before=before
    ):
        recent[cid].append(EventFacts(event_id, kind, at, channel, attributes))
    declines: dict[str, dict[str, datetime]] = defaultdict(dict)
    for cid, _, _, at, _, attributes in conversations.event_tuples(
        conn, live, now - DECLINE_MEMORY, (DECLINED,), until=until, before=before
    ):
        remember_decline(declines[cid], attributes, at)
    contacts: dict[str, list[tuple[str, str, datetime]]] = defaultdict(list)
    for cid, channel, purpose, at in conversations.contact_tuples(
        conn, live, now - timedelta(days=CONTACT_MEMORY_DAYS), until=until
    ):
        contacts[cid].append((channel, purpose, at))
    runs: dict[str, list[InstanceFacts]] = defaultdict(list)
    for r in conversations.instances_of(conn, ids) if instance_rows is None else instance_rows:
        runs[r["customer_id"]].append(instance_facts(r))
    return {
        row[0]: _customer(
            row,
            tags[row[0]],
            ledger[row[0]],
            held[row[0]],
            declines[row[0]],
            acquired[row[0]],
            recent[row[0]],
            contacts[row[0]],
            runs[row[0]],
            now,
        )
        for row in people
    }


def _holdings(
    conn: Connection, live: list[str], now: datetime, policy: Policy
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, dict[str, datetime]]]:
    """Each person's products (class, state), and per product class when they last took one within
    the acquisition cooling-off."""
    held: dict[str, list[tuple[str, str]]] = defaultdict(list)
    acquired: dict[str, dict[str, datetime]] = defaultdict(dict)
    taken_since = (now - timedelta(days=policy.acquisition_cooling_off_days)).date()
    for cid, product_class, state, opened in _tuples(conn, _PRODUCTS, products.c.customer_id, live):
        held[cid].append((product_class, state))
        taking = state in TAKEN and opened is not None and opened >= taken_since
        if taking and policy.acquisition_cooling_off_days:
            taken = datetime.combine(opened, time(), UTC)
            acquired[cid][product_class] = max(acquired[cid].get(product_class, taken), taken)
    return held, acquired


def remember_decline(declines: dict[str, datetime], attributes: Mapping[str, Any], at: datetime) -> None:
    """Keep the latest decline per product class (what the cooling-off rule reads)."""
    product_class = str(attributes.get("product_class", ""))
    declines[product_class] = max(declines.get(product_class, at), at)


def _customer(
    row: Any,
    tags: set[str],
    ledger: list[ConsentEntry],
    held: list[tuple[str, str]],
    declines: dict[str, datetime],
    acquired: dict[str, datetime],
    recent: list[EventFacts],
    contacts: list[tuple[str, str, datetime]],
    runs: list[InstanceFacts],
    now: datetime,
) -> CustomerFacts:
    (cid, status, tier, language, zone, dnc, vulnerable, fraud, complaints, blacklist, preferred) = row[:11]
    window = (row[11], row[12])
    granted = granted_consents(ledger, is_client=status == "client", now=now)
    return CustomerFacts(
        id=cid,
        status=status,
        value_tier=tier,
        language=language,
        timezone=zone,
        segments=frozenset(tags),
        do_not_contact=dnc,
        vulnerable=vulnerable,
        fraud_case_open=fraud,
        open_complaints=complaints,
        channel_blacklist=frozenset(blacklist or ()),
        consents=granted,
        products=tuple(held),
        preferred_channel=preferred,
        contact_window=window if None not in window else None,
        declines=declines,
        acquired=acquired,
        recent_events=tuple(recent),
        contacts=tuple(contacts),
        instances=tuple(runs),
    )


def forget_stored(facts: dict[str, CustomerFacts], rows: list[dict[str, Any]]) -> None:
    """Facts loaded without a bound on the history (a replay) may hold this batch's events already:
    take them out, so that each is added back as it is handled (an event counts once, a later one
    is not seen early)."""
    pending = {r["event_id"] for r in rows}
    for customer_id in {r["customer_id"] for r in rows} & facts.keys():
        stored = facts[customer_id]
        kept = tuple(e for e in stored.recent_events if e.event_id not in pending)
        if len(kept) != len(stored.recent_events):
            facts[customer_id] = stored.evolve(recent_events=kept)


def learn(customer: CustomerFacts, event: EventFacts, remembered: datetime, now: datetime) -> CustomerFacts:
    """The facts once `event` is handled, as `load_facts` reads them from the history in the next
    batch: the event among the recent ones if it is within the interest window, a decline
    remembered for the cooling-off. So a batch's size never changes what is decided."""
    declines = None
    if event.type == DECLINED and event.occurred_at >= now - DECLINE_MEMORY:
        declines = dict(customer.declines)
        remember_decline(declines, event.attributes, event.occurred_at)
    if event.occurred_at < remembered:
        return customer if declines is None else customer.evolve(declines=declines)
    return customer.evolve(recent_events=(*customer.recent_events, event), declines=declines)
