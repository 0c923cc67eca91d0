"""Scarce slots go by priority, not by arrival: a contact of service, collections or retention held
back by a frequency cap takes the slot of a queued commercial message (README, "Scenarios, decisions
and conversations"). Part of a decision batch (services/conversations/batch.py): it changes the
batch's working set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from omnicrm.domain.facts import Contact
from omnicrm.domain.lifecycle import WITHDRAWN
from omnicrm.domain.router import Effect
from omnicrm.domain.rules import RuleOutcome, cap_state
from omnicrm.domain.scenarios import PURPOSE_RANK, Scenario

if TYPE_CHECKING:
    from omnicrm.services.conversations.batch import Batch


@dataclass(frozen=True, slots=True)
class Queued:
    """A message or task of a running conversation, queued and not yet handed to a channel."""

    key: str  # its idempotency key: `{instance}:{cause}:{step}`
    instance_id: str
    channel: str
    purpose: str
    at: datetime

    @property
    def contact(self) -> Contact:
        return (self.channel, self.purpose, self.at)

    @property
    def step(self) -> str:
        return self.key.rsplit(":", 1)[1]


def capped(outcomes: tuple[RuleOutcome, ...]) -> bool:
    """Whether a frequency cap is what holds a contact back."""
    return any(o.rule == "frequency_cap" and o.effect == "delay" for o in outcomes)


def make_room(
    work: Batch, customer_id: str, scenario: Scenario, channel: str, cause: str, earlier: tuple[str, ...] = ()
) -> bool:
    """A contact of `scenario` is held by a frequency cap: if messages of lower priority (service,
    collections and retention go before commercial) hold the slots and are still queued, they give
    them up - each is withdrawn, and its conversation goes back to that step to wait for a slot.
    True when that frees a slot now. Only a message its conversation still waits on (the last one it
    sent) gives up its slot, so the conversation simply sends it again later."""
    policy, now, purpose = work.library.policy, work.now, scenario.purpose
    rank = PURPOSE_RANK.get(purpose, 0)
    live = {r["id"]: r for r in work.active.get(customer_id, {}).values()}
    lower = [
        q
        for q in work.queued.get(customer_id, [])
        if PURPOSE_RANK.get(q.purpose, 0) < rank
        and q.instance_id in live
        and (live[q.instance_id].get("awaiting") or []) == [q.key]
    ]
    if not lower:
        return False
    contacts = [*work.facts[customer_id].contacts, *((c, purpose, now) for c in earlier)]

    def until() -> datetime | None:
        return cap_state(tuple(contacts), policy, now, purpose, channel).until

    chosen: list[Queued] = []
    for q in sorted(lower, key=lambda q: (PURPOSE_RANK.get(q.purpose, 0), -q.at.timestamp())):
        before = until()
        if before is None:
            break
        if q.contact not in contacts:
            continue
        contacts.remove(q.contact)
        after = until()
        if after is not None and after >= before:
            contacts.append(q.contact)  # it was not what held the slot
            continue
        chosen.append(q)
    if not chosen or until() is not None:
        return False
    why = (
        f"its slot went to {scenario.id} ({purpose}): service, collections and retention go before commercial"
    )
    for q in chosen:
        _give_up_slot(work, customer_id, live[q.instance_id], q, why, cause)
    return True


def _give_up_slot(
    work: Batch, customer_id: str, row: dict[str, Any], q: Queued, why: str, cause: str
) -> None:
    """`q` is withdrawn and its conversation waits at its step again (re-checked right away: the
    caps then hold it, with their reason, until a slot frees)."""
    fresh = next((m for m in work.messages if m["idempotency_key"] == q.key), None)
    if fresh is not None:
        fresh.update(status=WITHDRAWN, status_reason=why[:300], status_at=work.now)
    else:
        work.yielded[q.key] = why
    work.queued[customer_id].remove(q)
    if q.contact in work.withdrawable.get(q.instance_id, []):
        work.withdrawable[q.instance_id].remove(q.contact)
    work.withdraw_contacts(customer_id, [q.contact])
    work.save(row, step=q.step, due_at=work.now, awaiting=None)
    scenario = work.library.get(row["scenario_id"], row["scenario_version"])
    if scenario is not None:
        rule = RuleOutcome("priority", "delay", why, work.now)
        work.note_step(scenario, row, Effect("held", q.step, q.channel, rules=(rule,), until=work.now), cause)
    work.report.yielded += 1
