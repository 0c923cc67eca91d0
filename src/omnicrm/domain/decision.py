"""The decision engine: which scenarios to start for one person now, on which channel, and why.

`decide` is pure: facts in, decisions out. For each scenario the event triggers, the hard rules
run first (rules.py); then a light score ranks what is left; then arbitration lets service and
retention outrank commercial offers and keeps at most one commercial conversation at a time. Every
decision keeps the rule outcomes, the score terms and the versions it used.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Collection, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from zoneinfo import ZoneInfo

import cel

from omnicrm.domain.facts import CustomerFacts, EventFacts
from omnicrm.domain.policy import Policy
from omnicrm.domain.rules import RULES, RuleOutcome, Situation, permitted_channels, quiet_until
from omnicrm.domain.scenarios import PURPOSE_RANK, Scenario, cel_context

Action = Literal["contact", "delay", "suppress", "escalate", "join"]
CAMPAIGN_EVENT = "crm.campaign.targeted"
CUSTOMER_VARIABLES = frozenset({"customer", "products", "reaction"})  # what CustomerFacts.as_cel() gives
ALL_VARIABLES = CUSTOMER_VARIABLES | {"event"}
TIER_VALUE = {"mass": 0.25, "affluent": 0.5, "premium": 0.75, "private": 1.0}


@dataclass(frozen=True, slots=True)
class Decision:
    customer_id: str
    scenario_id: str
    scenario_version: int
    purpose: str
    event_id: str
    action: Action
    channel: str | None
    due_at: dt.datetime | None
    rules: tuple[RuleOutcome, ...]
    score: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    policy_version: int = 0
    arbitration: str = ""

    @property
    def starts_conversation(self) -> bool:
        return self.action in ("contact", "delay", "escalate")


def triggered(
    scenarios: Iterable[Scenario], customer: CustomerFacts, event: EventFacts, context: Any = None
) -> list[Scenario]:
    """Scenarios whose trigger (event type and condition) matches this event."""
    matching = [s for s in scenarios if s.trigger_event == event.type]
    if context is None and any(s.trigger_when for s in matching):
        context = event_context(customer, event)
    return [s for s in matching if s.trigger_when is None or s.trigger_when.test(context)]


def score(
    scenario: Scenario,
    customer: CustomerFacts,
    event: EventFacts,
    channel: str | None,
    policy: Policy,
    now: dt.datetime,
) -> dict[str, float]:
    """The light score's terms, each between 0 and 1, already weighted."""
    w = policy.score_weights
    hours = max((now - event.occurred_at).total_seconds() / 3600, 0.0)
    wanted = scenario.product_class
    related = (
        sum(1 for e in customer.recent_events if e.attributes.get("product_class") == wanted) if wanted else 0
    )
    sent, reacted = customer.responses.get(channel or "", (0, 0))
    local_hour = _local_time(now, customer.timezone or "Europe/Kyiv")
    window = customer.contact_window
    in_window = window is None or window[0] <= local_hour < window[1]
    return {
        "recency": round(math.exp(-hours / 24) * w.recency, 4),
        "interest": round(min(1.0, related / 5) * w.interest, 4),
        "response": round((reacted + 1) / (sent + 2) * w.response, 4),  # Laplace: no history = one half
        "value": round(TIER_VALUE.get(customer.value_tier or "", 0.25) * w.value, 4),
        "time_of_day": round((1.0 if in_window else 0.5) * w.time_of_day, 4),
    }


@functools.lru_cache(maxsize=1024)
def _local_time(now: dt.datetime, zone: str) -> dt.time:
    """The wall-clock time in a zone at `now` (one batch decides at one `now` for many people)."""
    return now.astimezone(ZoneInfo(zone)).time()


def _judge(
    scenario: Scenario,
    customer: CustomerFacts,
    event: EventFacts,
    policy: Policy,
    now: dt.datetime,
    context: Any,
) -> Decision:
    channels = permitted_channels(scenario, customer)
    situation = Situation(scenario, customer, event, now, policy, channels[0] if channels else None)
    outcomes: list[RuleOutcome] = []
    if scenario.audience is not None and not scenario.audience.test(context):
        outcomes.append(RuleOutcome("audience", "suppress", "not in this scenario's audience"))
    else:
        outcomes.append(RuleOutcome("audience", "pass", "in the audience"))
        outcomes.extend(rule(situation) for rule in RULES)
    effects = {o.effect for o in outcomes}
    action: Action
    due: dt.datetime | None = now
    if "suppress" in effects:
        action, due = "suppress", None
    elif "join" in effects:
        action, due = "join", None
    elif "human" in effects:
        action = "escalate"
    elif "delay" in effects:
        action = "delay"
        due = max(o.until for o in outcomes if o.until is not None)
        # A slot freed by the frequency cap may fall in quiet hours: then wait for the morning too.
        due = quiet_until(customer, policy, due, scenario.purpose, situation.channel) or due
    else:
        action = "contact"
    terms = score(scenario, customer, event, situation.channel, policy, now) if action != "suppress" else {}
    return Decision(
        customer.id,
        scenario.id,
        scenario.version,
        scenario.purpose,
        event.event_id,
        action,
        "callcentre" if action == "escalate" else situation.channel,
        due,
        tuple(outcomes),
        terms,
        round(sum(terms.values()), 4),
        policy.version,
    )


def decide(
    customer: CustomerFacts,
    event: EventFacts,
    scenarios: Iterable[Scenario],
    policy: Policy,
    now: dt.datetime,
    contexts: MutableMapping[str, Any] | None = None,
    *,
    pretested: bool = False,
) -> list[Decision]:
    """Decisions for every scenario this event triggers, arbitrated against each other.

    `contexts` (customer id -> CEL context), kept by a caller for a batch in which profiles do
    not change, lets the customer's variables be converted to CEL once instead of per event.
    `pretested`: the caller kept only the scenarios whose trigger condition, if it reads only the
    event, holds on this event (services/conversations/relevance.py): those are not tested again.

    A campaign event names its scenario: the campaign is the trigger, so the scenario's own
    trigger is not tested, but its audience and every hard rule still are."""
    if event.type == CAMPAIGN_EVENT:
        wanted = event.attributes.get("scenario_id")
        candidates = [s for s in scenarios if s.id == wanted]
    else:
        candidates = [s for s in scenarios if s.trigger_event == event.type]
    if not candidates:
        return []
    untested = [] if event.type == CAMPAIGN_EVENT else candidates
    if pretested:
        untested = [s for s in untested if s.trigger_when is not None and not s.trigger_when.reads_event_only]
    conditions = [c for c in (*(s.trigger_when for s in untested), *(s.audience for s in candidates)) if c]
    needed = frozenset[str]().union(*(c.variables for c in conditions))
    context = event_context(customer, event, contexts, needed=needed) if conditions else None
    if untested:
        held = {s.id for s in triggered(untested, customer, event, context)}
        tested = {s.id for s in untested}
        candidates = [s for s in candidates if s.id in held or s.id not in tested]
    judged = [_judge(s, customer, event, policy, now, context) for s in candidates]
    return arbitrate(judged, customer)


def event_context(
    customer: CustomerFacts,
    event: EventFacts,
    contexts: MutableMapping[str, Any] | None = None,
    *,
    needed: Collection[str] = ALL_VARIABLES,
) -> Any:
    """The CEL variables of this customer and event that the conditions to evaluate read (`needed`).
    Converting a value to CEL costs ~10 us (a customer's whole part ~25 us), evaluating under 1 us:
    with `contexts` (customer id -> (context, names added)) the customer's variables are converted
    once per customer, each the first time a condition reads it, and only `event` is replaced."""
    if contexts is None:
        variables = {**customer.as_cel(), "event": event.as_cel(), "reaction": ""}
        return cel_context({name: variables[name] for name in variables.keys() & set(needed)})
    entry = contexts.get(customer.id)
    if entry is None:
        entry = contexts[customer.id] = (cel.Context(), set[str]())
    context, added = entry
    if missing := [name for name in needed if name not in added and name in CUSTOMER_VARIABLES]:
        variables = {**customer.as_cel(), "reaction": ""}
        for name in missing:
            context.add_variable(name, variables[name])
            added.add(name)
    if "event" in needed:
        context.add_variable("event", event.as_cel())
    return context


def arbitrate(decisions: list[Decision], customer: CustomerFacts) -> list[Decision]:
    """Service and retention first; one commercial conversation at a time; conflicting offers yield."""
    if not any(d.purpose == "commercial" and d.starts_conversation for d in decisions):
        return list(decisions)  # nothing to arbitrate
    running = [i for i in customer.instances if i.status == "active" and i.purpose == "commercial"]
    ranked = sorted(
        (d for d in decisions if d.starts_conversation),
        key=lambda d: (-PURPOSE_RANK[d.purpose], -d.total, d.scenario_id),
    )
    winner: Decision | None = None
    result = {id(d): d for d in decisions}
    for d in ranked:
        if d.purpose != "commercial":
            continue
        if running:
            result[id(d)] = _yield(
                d, f"one commercial conversation at a time: {running[0].scenario_id} is running"
            )
        elif winner is not None:
            result[id(d)] = _yield(
                d,
                f"conflicting offer: {winner.scenario_id} scored higher ({winner.total:.2f} > {d.total:.2f})",
            )
        else:
            winner = d
            result[id(d)] = replace(d, arbitration="chosen among the commercial offers")
    return [result[id(d)] for d in decisions]


def _yield(decision: Decision, why: str) -> Decision:
    return replace(
        decision,
        action="suppress",
        due_at=None,
        arbitration=why,
        rules=(*decision.rules, RuleOutcome("arbitration", "suppress", why)),
    )
