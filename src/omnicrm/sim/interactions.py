"""CRM interactions: calls, tickets, complaints, offers, upsells, campaign outcomes and branch visits."""

from __future__ import annotations

import datetime as dt

from omnicrm.sim import names
from omnicrm.sim.episodes import TARIFF, Episode, Pools, Touch, event, someone
from omnicrm.sim.world import BRANCHES, DAY, Person, Record, Table, World

_INBOUND = Table(
    [
        ("resolved", 60),
        ("callback_requested", 10),
        ("escalated", 8),
        ("offer_accepted", 3),
        ("offer_declined", 5),
    ]
)
_OUTBOUND = Table(
    [
        ("no_answer", 30),
        ("offer_declined", 20),
        ("offer_accepted", 10),
        ("resolved", 20),
        ("callback_requested", 12),
        ("wrong_number", 3),
    ]
)
_CAMPAIGN = Table(
    [("converted", 8), ("responded", 22), ("no_response", 45), ("declined", 20), ("opted_out", 5)]
)
_SEVERITY = Table([("low", 50), ("medium", 35), ("high", 15)])


def _contact(w: World, p: Pools, prospect_share: float) -> Person:
    """A client, or now and then a prospect whose phone the bank knows."""
    if p.callable_prospects and w.rng.random() < prospect_share:
        return someone(w, p.callable_prospects)
    return someone(w, w.clients)


def _crm(w: World, person: Person, source: str, channel: str = "callcentre") -> Touch:
    if person.client and w.rng.random() < 0.7:
        return source, channel, {"crm_id": person.ids["crm_id"]}
    return source, channel, {"phone": person.ids["phone"]}


def _operator(w: World) -> str:
    return f"op-{w.rng.randint(1, 120):03d}"


def _call(w: World, p: Pools) -> list[Record]:
    rng, person = w.rng, _contact(w, p, 0.15)
    direction = "inbound" if rng.random() < 0.6 else "outbound"
    disposition = (_INBOUND if direction == "inbound" else _OUTBOUND).pick(rng)
    attrs = {
        "direction": direction,
        "disposition": disposition,
        "topic": rng.choice(names.CALL_TOPICS),
        "duration_s": rng.randint(0, 30)
        if disposition in ("no_answer", "wrong_number")
        else rng.randint(30, 1_500),
        "operator": _operator(w),
    }
    return [event("crm.call.completed", w.moment(), _crm(w, person, "call_centre"), attrs)]


def _ticket(w: World, p: Pools) -> list[Record]:
    rng, person = w.rng, someone(w, w.clients)
    touch = _crm(w, person, "crm", "branch" if rng.random() < 0.2 else "callcentre")
    ticket_id, opened = f"TCK-{w.next_seq():07d}", w.moment()
    out = [
        event(
            "crm.ticket.opened",
            opened,
            touch,
            {"ticket_id": ticket_id, "topic": rng.choice(names.TICKET_TOPICS)},
        )
    ]
    closed = opened + dt.timedelta(minutes=rng.randint(30, 10 * 24 * 60))
    if rng.random() < 0.85 and closed < w.at(w.days * DAY):
        attrs = {"ticket_id": ticket_id, "outcome": rng.choice(names.TICKET_OUTCOMES)}
        out.append(event("crm.ticket.closed", closed, touch, attrs))
    return out


def _complaint(w: World, p: Pools) -> list[Record]:
    """A complaint, resolved later for about two thirds of them."""
    rng, person = w.rng, someone(w, w.clients)
    touch = _crm(w, person, "crm")
    complaint_id, registered = f"CMP-{w.next_seq():07d}", w.moment()
    attrs = {
        "complaint_id": complaint_id,
        "topic": rng.choice(names.COMPLAINT_TOPICS),
        "severity": _SEVERITY.pick(rng),
    }
    out = [event("crm.complaint.registered", registered, touch, attrs)]
    resolved = registered + dt.timedelta(hours=rng.randint(2, 20 * 24))
    if rng.random() < 0.78 and resolved < w.at(w.days * DAY):
        attrs = {"complaint_id": complaint_id, "resolution": rng.choice(names.RESOLUTIONS)}
        out.append(event("crm.complaint.resolved", resolved, touch, attrs))
    return out


def _offer_declined(w: World, p: Pools) -> list[Record]:
    rng, person = w.rng, _contact(w, p, 0.2)
    attrs = {
        "product_class": TARIFF.pick(rng),
        "reason": rng.choice(names.DECLINE_REASONS),
        "campaign_id": rng.choice(names.CAMPAIGNS),
    }
    return [event("crm.offer.declined", w.moment(), _crm(w, person, "crm"), attrs)]


def _upsell(w: World, p: Pools) -> list[Record]:
    rng, person = w.rng, someone(w, w.clients)
    touch = _crm(w, person, "branch", "branch") if rng.random() < 0.4 else _crm(w, person, "call_centre")
    attrs = {"product_class": TARIFF.pick(rng), "operator": _operator(w)}
    return [event("crm.upsell.succeeded", w.moment(), touch, attrs)]


def _campaign(w: World, p: Pools) -> list[Record]:
    person = _contact(w, p, 0.2)
    attrs = {"campaign_id": w.rng.choice(names.CAMPAIGNS), "outcome": _CAMPAIGN.pick(w.rng)}
    return [event("crm.campaign.outcome", w.moment(), _crm(w, person, "crm"), attrs)]


def _branch_visit(w: World, p: Pools) -> list[Record]:
    rng, person = w.rng, _contact(w, p, 0.05)
    attrs = {"branch": person.branch or BRANCHES.pick(rng), "purpose": rng.choice(names.BRANCH_PURPOSES)}
    return [event("crm.branch.visit", w.moment(), _crm(w, person, "branch", "branch"), attrs)]


INTERACTION_EPISODES: Table[Episode] = Table(
    [
        (_call, 45),
        (_ticket, 15 / 1.85),
        (_complaint, 3),
        (_offer_declined, 10),
        (_upsell, 5),
        (_campaign, 12),
        (_branch_visit, 10),
    ]
)
