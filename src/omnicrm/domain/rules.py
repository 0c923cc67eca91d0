"""Hard rules: compliance and courtesy checks that may suppress, delay or hand a contact to a human.

Each rule is a small pure function returning a RuleOutcome, so a decision can list every rule it
evaluated with its verdict. Their order here is the order in the explanation.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from omnicrm.domain.facts import CustomerFacts, EventFacts
from omnicrm.domain.policy import Cap, Policy
from omnicrm.domain.scenarios import Scenario

Effect = Literal["pass", "suppress", "delay", "human", "join"]
StepEffect = Literal["go", "skip", "hold", "stop", "person"]
_DAY, _WEEK = dt.timedelta(days=1), dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    rule: str
    effect: Effect
    detail: str
    until: dt.datetime | None = None  # for delays


@dataclass(frozen=True, slots=True)
class Situation:
    """One candidate: this scenario, for this person, because of this event, at `now`."""

    scenario: Scenario
    customer: CustomerFacts
    event: EventFacts
    now: dt.datetime
    policy: Policy
    channel: str | None  # the first channel the routing table would use

    @property
    def consent_purpose(self) -> str:
        return "service" if self.scenario.purpose == "service" else "marketing"


@functools.lru_cache(maxsize=4096)
def _pass(rule: str, detail: str) -> RuleOutcome:
    """A passed rule; outcomes are immutable, so every decision shares the same few."""
    return RuleOutcome(rule, "pass", detail)


def do_not_contact(s: Situation) -> RuleOutcome:
    if s.customer.do_not_contact and s.scenario.purpose != "service":
        return RuleOutcome("do_not_contact", "suppress", "the client asked not to be contacted")
    return _pass("do_not_contact", "no do-not-contact flag (or a service message)")


def fraud_case(s: Situation) -> RuleOutcome:
    if s.customer.fraud_case_open and s.scenario.purpose != "service":
        return RuleOutcome("fraud_case", "suppress", "an open fraud case stops all but service messages")
    return _pass("fraud_case", "no open fraud case")


def open_complaint(s: Situation) -> RuleOutcome:
    if s.customer.open_complaints and s.scenario.purpose == "commercial":
        return RuleOutcome(
            "open_complaint",
            "suppress",
            f"{s.customer.open_complaints} open complaint(s): no commercial offers until resolved",
        )
    return _pass("open_complaint", "no open complaint blocks this purpose")


def channel_permitted(s: Situation) -> RuleOutcome:
    if s.channel is None:
        return RuleOutcome(
            "channel", "suppress", "no channel of this scenario is permitted (consent, blacklist)"
        )
    return _pass("channel", f"{s.channel} is permitted for {s.consent_purpose} messages")


def vulnerable(s: Situation) -> RuleOutcome:
    if s.customer.vulnerable and s.scenario.purpose != "service":
        return RuleOutcome(
            "vulnerable", "human", "a vulnerable client is contacted by a person, not automatically"
        )
    return _pass("vulnerable", "not marked vulnerable")


def cooling_off(s: Situation) -> RuleOutcome:
    declined = s.customer.declines.get(s.scenario.product_class or "")
    days = s.scenario.cooling_off_days
    if declined is not None and days and s.now - declined < dt.timedelta(days=days):
        return RuleOutcome(
            "cooling_off",
            "suppress",
            f"declined a {s.scenario.product_class} offer on {declined.date()}, cooling-off of {days} days",
        )
    return _pass("cooling_off", "no recent decline of this product")


def recently_acquired(s: Situation) -> RuleOutcome:
    """No promotion of a product class the client has just taken (policy: acquisition cooling-off)."""
    wanted, days = s.scenario.product_class, s.policy.acquisition_cooling_off_days
    taken = s.customer.acquired.get(wanted or "") if s.scenario.purpose == "commercial" else None
    if taken is not None and days and s.now - taken < dt.timedelta(days=days):
        return RuleOutcome(
            "recently_acquired",
            "suppress",
            f"took a {wanted} product on {taken.date()}: no {wanted} promotion for {days} days",
        )
    return _pass("recently_acquired", "no product of this class taken recently")


def goal_reached(s: Situation) -> RuleOutcome:
    for event in s.customer.recent_events:
        if event.type == s.scenario.goal_event and event.occurred_at >= s.event.occurred_at:
            context = {**s.customer.as_cel(), "event": event.as_cel(), "reaction": ""}
            if s.scenario.goal_when is None or s.scenario.goal_when.test(context):
                return RuleOutcome(
                    "goal", "suppress", f"goal {event.type} already reached ({event.event_id})"
                )
    return _pass("goal", "goal not reached yet")


def reentry(s: Situation) -> RuleOutcome:
    mine = [i for i in s.customer.instances if i.scenario_id == s.scenario.id]
    if any(i.status == "active" for i in mine):
        return RuleOutcome(
            "reentry", "join", "already in this scenario: the event joins the running conversation"
        )
    if not mine:
        return _pass("reentry", "first time in this scenario")
    last = max(mine, key=lambda i: i.ended_at or i.started_at)
    if s.scenario.reentry == "never":
        return RuleOutcome("reentry", "suppress", "this scenario runs once per client")
    if s.scenario.reentry == "unless_goal" and any(i.goal_reached for i in mine):
        return RuleOutcome("reentry", "suppress", "the client already reached this scenario's goal")
    days = s.scenario.reentry_days
    if days and last.ended_at and s.now - last.ended_at < dt.timedelta(days=days):
        return RuleOutcome("reentry", "suppress", f"re-entry allowed {days} days after the last run")
    return _pass("reentry", "re-entry allowed")


@dataclass(frozen=True, slots=True)
class CapState:
    """Where a person stands against the frequency caps for one channel."""

    closed: str | None = None  # a cap of zero: "on sms" / "at all"
    until: dt.datetime | None = None  # when a slot frees up, if the limit is reached


def cap_state(
    contacts: tuple[tuple[str, str, dt.datetime], ...],
    policy: Policy,
    now: dt.datetime,
    purpose: str,
    channel: str,
) -> CapState:
    """Check the global and per-channel caps against the contacts made (channel, purpose, at)."""
    if purpose in policy.exempt_from_caps:
        return CapState()
    counted = [(c, at) for c, p, at in contacts if p not in policy.exempt_from_caps]
    limits: list[tuple[Cap | None, str | None]] = [
        (policy.caps, None),
        (policy.channel_caps.get(channel), channel),  # type: ignore[call-overload]
    ]
    until: dt.datetime | None = None
    for cap, only in limits:
        if cap is None:
            continue
        for limit, window in ((cap.per_day, _DAY), (cap.per_week, _WEEK)):
            if limit == 0:  # a cap of zero: this channel (or contact at all) is closed by policy
                return CapState(closed=f"on {only}" if only else "at all")
            times = sorted(at for c, at in counted if (only is None or c == only) and now - at < window)
            if limit is not None and len(times) >= limit:
                free_at = times[len(times) - limit] + window  # when one slot frees up
                until = max(until or free_at, free_at)
    return CapState(until=until)


def frequency_cap(s: Situation) -> RuleOutcome:
    if s.scenario.purpose in s.policy.exempt_from_caps or s.channel is None:
        return _pass("frequency_cap", "exempt from frequency caps")
    state = cap_state(s.customer.contacts, s.policy, s.now, s.scenario.purpose, s.channel)
    if state.closed:
        return RuleOutcome("frequency_cap", "suppress", f"the policy allows no contact {state.closed}")
    if state.until is not None:
        return RuleOutcome(
            "frequency_cap",
            "delay",
            f"contact limit reached; next slot {state.until:%Y-%m-%d %H:%M} UTC",
            state.until,
        )
    return _pass("frequency_cap", "within the contact limits")


def quiet_until(
    customer: CustomerFacts, policy: Policy, now: dt.datetime, purpose: str, channel: str | None
) -> dt.datetime | None:
    """When quiet hours in the person's zone end, if `now` is inside them (silent service messages -
    e-mail and in-app - are not held)."""
    if purpose == "service" and channel in ("inapp", "email"):
        return None
    zone = customer.timezone or "Europe/Kyiv"
    return _quiet(now, zone, policy.quiet_hours.start, policy.quiet_hours.end)[1]


@functools.lru_cache(maxsize=4096)
def _quiet(
    now: dt.datetime, zone_name: str, start: dt.time, end: dt.time
) -> tuple[str, dt.datetime | None, str]:
    """(local time as HH:MM, when quiet hours end if `now` is inside them, that end as local HH:MM).
    A batch decides at one `now` for thousands of people in a few zones: each is worked out once."""
    local = now.astimezone(ZoneInfo(zone_name))
    quiet = (local.time() >= start or local.time() < end) if start > end else (start <= local.time() < end)
    if not quiet:
        return f"{local:%H:%M}", None, ""
    resume = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if resume <= local:
        resume += _DAY
    return f"{local:%H:%M}", resume.astimezone(dt.UTC), f"{resume:%H:%M}"


def quiet_hours(s: Situation) -> RuleOutcome:
    zone = s.customer.timezone or "Europe/Kyiv"
    local, _, resume = _quiet(s.now, zone, s.policy.quiet_hours.start, s.policy.quiet_hours.end)
    until = quiet_until(s.customer, s.policy, s.now, s.scenario.purpose, s.channel)
    if until is None:
        return _pass("quiet_hours", f"{local} local time is outside quiet hours")
    return RuleOutcome(
        "quiet_hours", "delay", f"{local} in {zone} is quiet time; waits until {resume} local", until
    )


RULES: tuple[Callable[[Situation], RuleOutcome], ...] = (
    do_not_contact,
    fraud_case,
    open_complaint,
    channel_permitted,
    cooling_off,
    recently_acquired,
    goal_reached,
    reentry,
    vulnerable,
    frequency_cap,
    quiet_hours,
)


def permitted_channels(scenario: Scenario, customer: CustomerFacts) -> list[str]:
    """The scenario's channels this person may be reached on for its purpose, in routing-table order."""
    purpose = "service" if scenario.purpose == "service" else "marketing"
    return [
        c
        for c in scenario.channels  # escalate steps contribute "callcentre"
        if c not in customer.channel_blacklist and customer.consents.get((c, purpose), False)
    ]


# --- the same rules before every step of a running conversation ------------------------------------
_STOPPING = frozenset({"do_not_contact", "fraud_case", "open_complaint", "recently_acquired", "goal"})


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """What the hard rules say about one send or escalation of a running conversation."""

    effect: StepEffect
    outcomes: tuple[RuleOutcome, ...] = ()
    until: dt.datetime | None = None  # hold: when to try again
    outcome: str | None = None  # stop: how the conversation ends

    @property
    def reason(self) -> str:
        return "; ".join(o.detail for o in self.outcomes if o.effect != "pass")


def step_channel(s: Situation, channel: str) -> RuleOutcome:
    """Consent for this step's own channel and purpose, and the channel blacklist."""
    if channel in s.customer.channel_blacklist:
        return RuleOutcome("channel", "suppress", f"{channel} is blacklisted for this person")
    if not s.customer.consents.get((channel, s.consent_purpose), False):
        return RuleOutcome("channel", "suppress", f"no {s.consent_purpose} consent on {channel}")
    return _pass("channel", f"{channel} is permitted for {s.consent_purpose} messages")


def step_verdict(
    scenario: Scenario,
    customer: CustomerFacts,
    trigger: EventFacts,
    now: dt.datetime,
    policy: Policy,
    *,
    kind: str,
    channel: str,
    earlier: tuple[str, ...] = (),
) -> StepVerdict:
    """Every hard rule before a step (`kind` send or escalate) on `channel`, the same functions as a
    first decision: do-not-contact, fraud case, open complaint, a product just taken and the goal end
    the conversation; a channel without consent (or closed by policy) is skipped; a vulnerable client
    gets a person instead of an automatic message; caps and quiet hours hold the step. `earlier`:
    channels already contacted in this run (they count towards the caps)."""
    if earlier:
        added = tuple((c, scenario.purpose, now) for c in earlier)
        customer = customer.evolve(contacts=customer.contacts + added)
    s = Situation(scenario, customer, trigger, now, policy, channel)
    outcomes = [
        do_not_contact(s),
        fraud_case(s),
        open_complaint(s),
        step_channel(s, channel),
        recently_acquired(s),
        goal_reached(s),
    ]
    if kind == "send":
        outcomes.append(vulnerable(s))
    outcomes.append(frequency_cap(s))
    if kind == "send":
        outcomes.append(quiet_hours(s))
    blocked = [o for o in outcomes if o.effect == "suppress"]
    if stop := next((o for o in blocked if o.rule in _STOPPING), None):
        ending = "goal_reached" if stop.rule == "goal" else f"cancelled_by_{stop.rule}"
        return StepVerdict("stop", tuple(outcomes), outcome=ending)
    if blocked:  # no consent on this channel, or the policy closes it: this step is skipped
        return StepVerdict("skip", tuple(outcomes))
    if any(o.effect == "human" for o in outcomes):
        return StepVerdict("person", tuple(outcomes))
    delays = [o.until for o in outcomes if o.effect == "delay" and o.until is not None]
    if delays:
        until = max(delays)
        # a slot freed by the frequency cap may fall in quiet hours: then wait for the morning too
        if kind == "send":
            until = quiet_until(customer, policy, until, scenario.purpose, channel) or until
        return StepVerdict("hold", tuple(outcomes), until)
    return StepVerdict("go", tuple(outcomes))
