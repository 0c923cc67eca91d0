"""The last look before a message leaves: the hard rules again, at the moment of sending.

A message was decided when its step ran; minutes or hours may pass before a channel worker sends it
(a provider throttles, a retry waits, the night's quiet hours held the queue). Just before sending,
dispatch asks `send_verdict` with the person's facts as they are now. It runs the same rule
functions as a decision (domain/rules.py) that can change in that time:

- do-not-contact, an open fraud case, an open complaint (commercial), the goal reached since the
  message was queued, the channel's consent withdrawn or blacklisted -> `withdraw` (never sent);
- the offer expired (queued longer than the channel's `expiry`) -> `withdraw` ("expired");
- quiet hours in the person's zone -> `postpone` until they end;
- else `go`.
Frequency caps are not re-applied: the message itself is one of the contacts they counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from omnicrm.domain.facts import CustomerFacts, EventFacts
from omnicrm.domain.policy import Policy
from omnicrm.domain.rules import (
    RuleOutcome,
    Situation,
    do_not_contact,
    fraud_case,
    goal_reached,
    open_complaint,
    quiet_hours,
    step_channel,
)
from omnicrm.domain.scenarios import Scenario


@dataclass(frozen=True, slots=True)
class SendVerdict:
    effect: Literal["go", "withdraw", "postpone"]
    outcomes: tuple[RuleOutcome, ...]
    until: dt.datetime | None = None  # postpone: when to try again

    @property
    def reason(self) -> str:
        return "; ".join(o.detail for o in self.outcomes if o.effect != "pass")


def send_verdict(
    scenario: Scenario,
    customer: CustomerFacts,
    *,
    channel: str,
    queued_at: dt.datetime,
    now: dt.datetime,
    policy: Policy,
    expiry: dt.timedelta,
) -> SendVerdict:
    """Whether a message of `scenario` queued at `queued_at` may leave on `channel` at `now`."""
    since = EventFacts("(queued)", "(queued)", queued_at, channel, {})
    s = Situation(scenario, customer, since, now, policy, channel)
    outcomes = [
        do_not_contact(s),
        fraud_case(s),
        open_complaint(s),
        step_channel(s, channel),
        goal_reached(s),
    ]
    if now - queued_at > expiry:
        outcomes.append(
            RuleOutcome(
                "expiry", "suppress", f"queued {_age(now - queued_at)} ago: older than {_age(expiry)}"
            )
        )
    if any(o.effect == "suppress" for o in outcomes):
        return SendVerdict("withdraw", tuple(outcomes))
    quiet = quiet_hours(s)
    outcomes.append(quiet)
    if quiet.effect == "delay":
        return SendVerdict("postpone", tuple(outcomes), quiet.until)
    return SendVerdict("go", tuple(outcomes))


def _age(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"
