"""A queue of e-mails as the decision engine leaves it: people (with an e-mail address and marketing
consent on e-mail), a deposit-renewal conversation each, and its queued e-mail - written in bulk, so
that the dispatch crash test and benchmark start from thousands of queued messages in seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from omnicrm.domain.lifecycle import QUEUED
from omnicrm.store.tables import consents, customers, events, identifiers, instances, outbox

SCENARIO, VERSION, TEMPLATE = "deposit-renewal", 1, "deposit_renewal_email"
_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def daytime_zone(now: datetime) -> str:
    """A time zone where it is about noon at `now`: quiet hours are kept in the client's zone, and a
    test or benchmark runs at any hour of the day."""
    offset = 12 - now.hour  # local = UTC + offset; Etc/GMT names carry the sign the other way round
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def _id() -> str:
    """A random profile id of letters only: a long run of digits could pass for a card number."""
    return uuid.uuid4().hex.translate(_LETTERS)


def _chunks(rows: list[dict[str, Any]], size: int = 2000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def people(conn: Connection, count: int, *, now: datetime, zone: str, prefix: str = "p") -> list[str]:
    """`count` clients, each with an e-mail address and marketing consent on e-mail; their ids."""
    rows, addresses, ledger = [], [], []
    for n in range(count):
        cid = _id()
        rows.append(_person(cid, n, now, zone))
        addresses.append(_address(cid, f"{prefix}{n}@client.example", now))
        ledger.append(_consent(cid, now))
    for table, batch in ((customers, rows), (identifiers, addresses), (consents, ledger)):
        for chunk in _chunks(batch):
            conn.execute(insert(table), chunk)
    return [str(r["id"]) for r in rows]


def _person(cid: str, n: int, now: datetime, zone: str) -> dict[str, Any]:
    return {
        "id": cid,
        "status": "client",
        "first_name": f"Client{n}",
        "language": "uk" if n % 3 else "en",
        "timezone": zone,
        "do_not_contact": False,
        "vulnerable": False,
        "fraud_case_open": False,
        "open_complaints": 0,
        "channel_blacklist": [],
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


def _address(cid: str, email: str, now: datetime) -> dict[str, Any]:
    return {"kind": "email", "value": email, "customer_id": cid, "origin_id": cid, "created_at": now}


def _consent(cid: str, now: datetime, channel: str = "email") -> dict[str, Any]:
    return {
        "customer_id": cid,
        "origin_id": cid,
        "channel": channel,
        "purpose": "marketing",
        "granted": True,
        "legal_basis": "consent",
        "source": "seed",
        "effective_at": now - timedelta(days=30),
        "recorded_at": now,
        "recorded_by": "seed",
    }


def seed(
    conn: Connection, count: int, *, now: datetime, zone: str, prefix: str = "q", sms: bool = False
) -> list[str]:
    """Queue `count` renewal e-mails (one per new person); returns their idempotency keys. `sms`:
    each person also has a phone number and SMS consent (the conversation's next step)."""
    people_: list[dict[str, Any]] = []
    addresses: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    started: list[dict[str, Any]] = []
    triggers: list[dict[str, Any]] = []
    queued: list[dict[str, Any]] = []
    ids: list[str] = []
    for n in range(count):
        cid = _id()
        ids.append(cid)
        people_.append(_person(cid, n, now, zone))
        addresses.append(_address(cid, f"{prefix}{n}@client.example", now))
        ledger.append(_consent(cid, now))
        if sms:
            addresses.append(
                {
                    "kind": "phone",
                    "value": f"+38067{n:07d}",
                    "customer_id": cid,
                    "origin_id": cid,
                    "created_at": now,
                }
            )
            ledger.append(_consent(cid, now, "sms"))
        event_id = f"{prefix}-ev-{cid}"
        triggers.append(
            {
                "event_id": event_id,
                "customer_id": cid,
                "origin_id": cid,
                "kind": "operational",
                "type": "deposit.maturing",
                "source": "core_banking",
                "channel": None,
                "occurred_at": now - timedelta(minutes=1),
                "received_at": now,
                "attributes": {
                    "contract_number": f"D-{n}",
                    "maturity_date": "2026-12-31",
                    "amount": 1000 + n,
                },
            }
        )
        instance = _id()
        started.append(
            {
                "id": instance,
                "customer_id": cid,
                "scenario_id": SCENARIO,
                "scenario_version": VERSION,
                "purpose": "retention",
                "status": "active",
                "step": "wait_email",
                "due_at": now + timedelta(days=3),
                "trigger_event_id": event_id,
                "goal_reached": False,
                "started_at": now,
                "updated_at": now,
            }
        )
        queued.append(
            {
                "idempotency_key": f"{prefix}-{n}",
                "customer_id": cid,
                "instance_id": instance,
                "kind": "message",
                "channel": "email",
                "template": TEMPLATE,
                "purpose": "retention",
                "payload": {
                    "message_id": f"{prefix}-{n}",
                    "scenario": f"{SCENARIO}@{VERSION}",
                    "step": "email",
                },
                "status": QUEUED,
                "available_at": now,
                "created_at": now,
                "attempts": 0,
            }
        )
    for table, rows in (
        (customers, people_),
        (identifiers, addresses),
        (consents, ledger),
        (events, triggers),
        (instances, started),
        (outbox, queued),
    ):
        for chunk in _chunks(rows):
            conn.execute(insert(table), chunk)
    return [str(r["idempotency_key"]) for r in queued]
