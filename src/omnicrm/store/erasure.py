"""Rows of data subjects' rights: erasure requests, identifier tombstones, and the erasure's writes.

Which tables hold a person's data is read from the schema itself: every table with a column that
refers to `customers.id`. A table added later is exported (and counted in the export test) without
anyone remembering to list it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from omnicrm.domain.lifecycle import QUEUED, WITHDRAWN
from omnicrm.domain.privacy import ERASED, ERASED_PROFILE, EXECUTED, REQUESTED, pseudonym
from omnicrm.store.profiles import among
from omnicrm.store.tables import (
    customers,
    erased_identifiers,
    erasure_requests,
    events,
    identifiers,
    inbox_messages,
    merges,
    metadata,
    outbox,
    products,
    push_subscriptions,
    relationships,
    segments,
    tasks,
)

Pair = tuple[str, str]


def customer_columns(table: Table) -> list[Column[Any]]:
    """The columns of `table` that name a customer (foreign keys to `customers.id`, and its own id)."""
    found = [c for c in table.columns if any(fk.column is customers.c.id for fk in c.foreign_keys)]
    return [customers.c.id, *found] if table is customers else found


def rows_of(conn: Connection, ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table that names one of these customers, by table name."""
    wanted = sorted(set(ids))
    found: dict[str, list[dict[str, Any]]] = {}
    for table in metadata.sorted_tables:
        columns = customer_columns(table)
        if columns:
            query = select(table).where(or_(*(c.in_(wanted) for c in columns)))
            found[table.name] = [dict(r._mapping) for r in conn.execute(query.order_by(*table.primary_key))]
    return found


def erased_among(conn: Connection, pairs: Iterable[Pair]) -> set[Pair]:
    """The (kind, normalised value) pairs that belonged to an erased person (one indexed query)."""
    digests = {pseudonym(kind, value): (kind, value) for kind, value in set(pairs)}
    if not digests:
        return set()
    # one bound parameter (`among`): the statement is compiled once, whatever the batch's size
    query = select(erased_identifiers.c.kind, erased_identifiers.c.digest).where(
        among(conn, erased_identifiers.c.digest, digests)
    )
    return {digests[d] for kind, d in conn.execute(query) if digests[d][0] == kind}


def erased_profiles(conn: Connection, ids: Iterable[str]) -> set[str]:
    """The ids among these whose profile was erased."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    query = select(customers.c.id).where(customers.c.id.in_(wanted), customers.c.status == ERASED)
    return set(conn.execute(query).scalars())


def open_request_of(conn: Connection, customer_id: str) -> str | None:
    query = select(erasure_requests.c.id).where(
        erasure_requests.c.customer_id == customer_id, erasure_requests.c.status == REQUESTED
    )
    return conn.execute(query).scalar_one_or_none()


def add_request(conn: Connection, *, request_id: str, customer_id: str, actor: str, now: datetime) -> None:
    conn.execute(
        insert(erasure_requests).values(
            id=request_id, customer_id=customer_id, status=REQUESTED, requested_by=actor, requested_at=now
        )
    )


def get_request(conn: Connection, request_id: str) -> dict[str, Any] | None:
    """The request, locked until the transaction ends (a second approval waits, then finds it done)."""
    query = select(erasure_requests).where(erasure_requests.c.id == request_id).with_for_update()
    row = conn.execute(query).first()
    return None if row is None else dict(row._mapping)


def close_request(
    conn: Connection, request_id: str, *, approver: str, now: datetime, summary: dict[str, int]
) -> None:
    conn.execute(
        update(erasure_requests)
        .where(erasure_requests.c.id == request_id)
        .values(status=EXECUTED, approved_by=approver, executed_at=now, summary=summary)
    )


def bury_identifiers(conn: Connection, ids: list[str], *, request_id: str, now: datetime) -> int:
    """Delete the person's identifiers, leaving each one's keyed digest as a tombstone."""
    mine = or_(identifiers.c.customer_id.in_(ids), identifiers.c.origin_id.in_(ids))
    pairs = {
        (k, pseudonym(k, v))
        for k, v in conn.execute(select(identifiers.c.kind, identifiers.c.value).where(mine))
    }
    stored = select(erased_identifiers.c.kind, erased_identifiers.c.digest).where(
        erased_identifiers.c.digest.in_(sorted(d for _, d in pairs))
    )
    known = {(kind, digest) for kind, digest in conn.execute(stored)}
    new = [
        {"kind": k, "digest": d, "request_id": request_id, "erased_at": now} for k, d in sorted(pairs - known)
    ]
    if new:
        conn.execute(insert(erased_identifiers), new)
    conn.execute(delete(identifiers).where(mine))
    return len(pairs)


def scrub(conn: Connection, ids: list[str], *, now: datetime) -> dict[str, int]:
    """Erase the personal values the person's rows hold; keep what counts and metrics need (event
    types and times, message channels and statuses, product classes and states). Returns the rows
    touched per table (counts only)."""
    done: dict[str, int] = {}
    changed = update(customers).where(customers.c.id.in_(ids))
    values = {**ERASED_PROFILE, "updated_at": now, "version": customers.c.version + 1}
    done["customers"] = conn.execute(changed.values(values)).rowcount
    done["segments"] = conn.execute(delete(segments).where(segments.c.customer_id.in_(ids))).rowcount
    own = or_(relationships.c.customer_id.in_(ids), relationships.c.origin_id.in_(ids))
    done["relationships"] = conn.execute(delete(relationships).where(own)).rowcount
    about = update(relationships).where(relationships.c.related_id.in_(ids))
    done["relationships"] += conn.execute(about.values(note=None)).rowcount
    held = or_(products.c.customer_id.in_(ids), products.c.origin_id.in_(ids))
    found = conn.execute(
        select(products.c.id, products.c.product_class, products.c.contract_number).where(held)
    )
    done["products"] = 0
    for pid, cls, number in found.all():  # the contract number becomes its digest: still unique
        masked = update(products).where(products.c.id == pid)
        conn.execute(masked.values(contract_number=pseudonym(f"contract:{cls}", number), terms={}))
        done["products"] += 1
    timeline = or_(events.c.customer_id.in_(ids), events.c.origin_id.in_(ids))
    done["events"] = conn.execute(update(events).where(timeline).values(attributes={})).rowcount
    messages = update(outbox).where(outbox.c.customer_id.in_(ids))
    done["outbox"] = conn.execute(messages.values(payload={})).rowcount
    # the internet-bank inbox keeps when a message was there and read, not what it said
    shown = update(inbox_messages).where(inbox_messages.c.customer_id.in_(ids))
    done["inbox_messages"] = conn.execute(shown.values(title=None, body="")).rowcount
    devices = delete(push_subscriptions).where(push_subscriptions.c.customer_id.in_(ids))
    done["push_subscriptions"] = conn.execute(devices).rowcount
    calls = update(tasks).where(tasks.c.customer_id.in_(ids))  # an operator's note may name the person
    done["tasks"] = conn.execute(calls.values(note=None)).rowcount
    live = update(tasks).where(tasks.c.customer_id.in_(ids), tasks.c.status.in_(("open", "claimed")))
    conn.execute(live.values(status="withdrawn"))
    involved = or_(merges.c.survivor_id.in_(ids), merges.c.merged_id.in_(ids))
    erased_merge = {"snapshot": {"erased": True}, "reason": "erased"}
    done["merges"] = conn.execute(update(merges).where(involved).values(erased_merge)).rowcount
    return done


def withdraw_queued(conn: Connection, ids: list[str], *, reason: str, now: datetime) -> int:
    """Every message or task of these customers still queued (with or without a conversation)."""
    query = update(outbox).where(outbox.c.customer_id.in_(ids), outbox.c.status == QUEUED)
    result = conn.execute(query.values(status=WITHDRAWN, status_reason=reason, status_at=now))
    return int(result.rowcount)
