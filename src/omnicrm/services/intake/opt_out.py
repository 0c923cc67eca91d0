"""STOP means stop: an inbound opt-out is honoured in the transaction that stores it on the timeline.

A `message.reaction` with `unsubscribed` (or `complained`: a spam complaint) and a
`crm.campaign.outcome` with `opted_out` each
- append a withdrawal of marketing consent for the message's channel to the consent ledger (source:
  the event type, effective when it happened - never later than when it was received), and
- withdraw this person's queued marketing messages on that channel, with the reason.
The decision worker then reads the ledger as it stands: every later step and first decision on that
channel is skipped (rules.step_verdict, rules.channel_permitted), and the conversation re-routes to a
channel still permitted, or ends. A campaign outcome without a channel withdraws every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from omnicrm.domain.vocabulary import CHANNELS
from omnicrm.store import conversations, profiles

REACTION = "message.reaction"
CAMPAIGN_OUTCOME = "crm.campaign.outcome"
OPT_OUT_REACTIONS = frozenset({"unsubscribed", "complained"})


def is_opt_out(event_type: str, attributes: dict[str, Any]) -> bool:
    if event_type == REACTION:
        return attributes.get("reaction") in OPT_OUT_REACTIONS
    return event_type == CAMPAIGN_OUTCOME and attributes.get("outcome") == "opted_out"


def honour(conn: Connection, rows: Sequence[dict[str, Any]], *, actor: str, now: datetime) -> int:
    """Apply the opt-outs among these stored timeline rows (in the caller's transaction); returns
    how many queued messages were withdrawn."""
    found = [r for r in rows if is_opt_out(r["type"], r["attributes"])]
    if not found:
        return 0
    keys = [str(r["attributes"]["message_id"]) for r in found if r["type"] == REACTION]
    sent = conversations.outbox_by_key(conn, keys) if keys else {}
    ledger: list[dict[str, Any]] = []
    withdrawn = 0
    for row in found:
        message = sent.get(str(row["attributes"].get("message_id")))
        channel = message["channel"] if message is not None else row["channel"]
        channels = [channel] if channel else list(CHANNELS)
        effective = min(row["occurred_at"], now)
        for each in channels:
            ledger.append(
                {
                    "customer_id": row["customer_id"],
                    "origin_id": row["origin_id"],
                    "channel": each,
                    "purpose": "marketing",
                    "granted": False,
                    "legal_basis": "consent",
                    "source": row["type"],
                    "effective_at": effective,
                    "recorded_at": now,
                    "recorded_by": actor[:64],
                }
            )
        why = f"opt-out: {row['type']} {row['attributes'].get('reaction') or 'opted_out'} ({row['event_id']})"
        withdrawn += conversations.withdraw_channel(conn, row["customer_id"], channels, reason=why, now=now)
    profiles.append_consents(conn, ledger)
    return withdrawn
