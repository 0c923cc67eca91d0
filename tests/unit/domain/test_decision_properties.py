"""Properties of decide() over random customers and random sets of scenarios."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicrm.domain.decision import Decision, decide
from omnicrm.domain.facts import SAMPLE_CUSTOMER, CustomerFacts, EventFacts, InstanceFacts
from omnicrm.domain.policy import Policy
from omnicrm.domain.scenarios import Scenario, ScenarioSpec, compile_scenario

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POLICY = Policy.model_validate(
    {
        "version": 1,
        "caps": {"per_day": 2, "per_week": 5},
        "channel_caps": {"sms": {"per_week": 2}, "callcentre": {"per_week": 1}},
        "quiet_hours": {"start": "21:00", "end": "09:00"},
        "score_weights": {
            "recency": 0.3,
            "interest": 0.25,
            "response": 0.2,
            "value": 0.15,
            "time_of_day": 0.1,
        },
    }
)
CHANNELS = ("email", "sms", "webpush", "inapp")
PURPOSES = ("commercial", "service", "retention", "collections")
CLASSES = ("consumer_loan", "card", "deposit")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRIGGER_AT = NOW - dt.timedelta(hours=2)
EVENT = EventFacts("ev-1", "application.abandoned", TRIGGER_AT, "web", {"product_class": "consumer_loan"})


def build_scenario(
    index: int, purpose: str, channels: list[str], product_class: str, escalate: bool
) -> Scenario:
    steps: dict[str, Any] = {}
    names = [f"s{i}" for i in range(len(channels))]
    for i, channel in enumerate(channels):
        nxt = names[i + 1] if i + 1 < len(names) else ("call" if escalate else "done")
        steps[names[i]] = {"send": {"channel": channel, "template": f"t_{channel}"}, "next": nxt}
    if escalate:
        steps["call"] = {"escalate": {"queue": "q1", "reason": "no reaction"}, "next": "done"}
    steps["done"] = {"end": "finished"}
    spec = {
        "id": f"scenario-{index}",
        "version": 1,
        "name": f"Scenario {index}",
        "purpose": purpose,
        "product_class": product_class,
        "priority": 10,
        "trigger": {"event": "application.abandoned"},
        "goal": {"event": "application.completed"},
        "reentry": {"mode": "never"},
        "start": next(iter(steps)),
        "steps": steps,
    }
    return compile_scenario(ScenarioSpec.model_validate(spec))


@st.composite
def scenario_sets(draw: st.DrawFn) -> list[Scenario]:
    count = draw(st.integers(1, 4))
    return [
        build_scenario(
            i,
            draw(st.sampled_from(PURPOSES)),
            draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3, unique=True)),
            draw(st.sampled_from(CLASSES)),
            draw(st.booleans()),
        )
        for i in range(count)
    ]


times = st.integers(0, 8 * 24 * 60).map(lambda m: NOW - dt.timedelta(minutes=m))


@st.composite
def customers(draw: st.DrawFn) -> CustomerFacts:
    consent_keys = [(c, p) for c in (*CHANNELS, "callcentre") for p in ("service", "marketing")]
    consents = draw(st.dictionaries(st.sampled_from(consent_keys), st.booleans()))
    contacts = draw(
        st.lists(
            st.tuples(st.sampled_from((*CHANNELS, "callcentre")), st.sampled_from(PURPOSES), times),
            max_size=8,
        )
    )
    instances = draw(
        st.lists(
            st.builds(
                InstanceFacts,
                scenario_id=st.sampled_from(["scenario-0", "scenario-1", "other"]),
                version=st.just(1),
                purpose=st.sampled_from(PURPOSES),
                status=st.sampled_from(["active", "completed", "cancelled"]),
                started_at=times,
                ended_at=st.none() | times,
                goal_reached=st.booleans(),
            ),
            max_size=3,
        )
    )
    recent = draw(
        st.lists(
            st.builds(
                EventFacts,
                event_id=st.sampled_from(["e1", "e2", "e3"]),
                type=st.sampled_from(
                    ["application.completed", "tariff_page.visited", "application.abandoned"]
                ),
                occurred_at=times,
                channel=st.none(),
                attributes=st.fixed_dictionaries({"product_class": st.sampled_from(CLASSES)}),
            ),
            max_size=4,
        )
    )
    return replace(
        SAMPLE_CUSTOMER,
        value_tier=draw(st.sampled_from([None, "mass", "affluent", "premium", "private"])),
        timezone=draw(st.sampled_from(["Europe/Kyiv", "UTC", "America/New_York", None])),
        do_not_contact=draw(st.booleans()),
        vulnerable=draw(st.booleans()),
        fraud_case_open=draw(st.booleans()),
        open_complaints=draw(st.integers(0, 2)),
        channel_blacklist=frozenset(draw(st.lists(st.sampled_from(CHANNELS), max_size=2))),
        consents=consents,
        contacts=tuple(contacts),
        instances=tuple(instances),
        recent_events=tuple(recent),
        declines=draw(st.dictionaries(st.sampled_from(CLASSES), times, max_size=2)),
    )


nows = st.integers(0, 24 * 60 - 1).map(lambda m: NOW.replace(hour=0) + dt.timedelta(minutes=m))


def run(cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime) -> list[Decision]:
    decisions = decide(cust, EVENT, scenarios, POLICY, now)
    assert len(decisions) == len(scenarios)
    return decisions


@SETTINGS
@given(customers(), scenario_sets(), nows)
def test_at_most_one_commercial_conversation_starts(
    cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime
) -> None:
    decisions = run(cust, scenarios, now)
    starting = [d for d in decisions if d.purpose == "commercial" and d.starts_conversation]
    assert len(starting) <= 1
    if any(i.status == "active" and i.purpose == "commercial" for i in cust.instances):
        assert starting == []


@SETTINGS
@given(customers(), scenario_sets(), nows, st.integers(0, 120))
def test_goal_after_trigger_stops_every_conversation(
    cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime, minutes: int
) -> None:
    goal = EventFacts("goal-1", "application.completed", TRIGGER_AT + dt.timedelta(minutes=minutes), None, {})
    cust = replace(cust, recent_events=(*cust.recent_events, goal))
    for d in run(cust, scenarios, now):
        assert not d.starts_conversation, d


@SETTINGS
@given(customers(), scenario_sets(), nows)
def test_no_contact_when_the_caps_are_reached(
    cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime
) -> None:
    counted = [(c, at) for c, p, at in cust.contacts if p not in POLICY.exempt_from_caps]
    for d in run(cust, scenarios, now):
        if d.action != "contact" or d.purpose in POLICY.exempt_from_caps:
            continue
        today = [at for _, at in counted if now - at < dt.timedelta(days=1)]
        week = [at for _, at in counted if now - at < dt.timedelta(days=7)]
        assert len(today) < 2
        assert len(week) < 5
        cap = POLICY.channel_caps.get(d.channel)  # type: ignore[call-overload]
        if cap is not None and cap.per_week is not None:
            on_channel = [at for c, at in counted if c == d.channel and now - at < dt.timedelta(days=7)]
            assert len(on_channel) < cap.per_week


@SETTINGS
@given(customers(), scenario_sets(), nows)
def test_contacts_only_on_consented_unblocked_channels(
    cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime
) -> None:
    for d in run(cust, scenarios, now):
        if d.action not in ("contact", "delay"):
            continue
        purpose = "service" if d.purpose == "service" else "marketing"
        assert d.channel is not None
        assert d.channel not in cust.channel_blacklist
        assert cust.consents.get((d.channel, purpose)) is True


@SETTINGS
@given(customers(), scenario_sets(), nows)
def test_delays_are_in_the_future_and_contacts_now(
    cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime
) -> None:
    for d in run(cust, scenarios, now):
        if d.action == "delay":
            assert d.due_at is not None
            assert d.due_at > now
            assert d.due_at.utcoffset() == dt.timedelta(0)
        elif d.action in ("contact", "escalate"):
            assert d.due_at == now
        else:
            assert d.due_at is None


@SETTINGS
@given(customers(), scenario_sets(), nows)
def test_every_decision_explains_itself(
    cust: CustomerFacts, scenarios: list[Scenario], now: dt.datetime
) -> None:
    for d in run(cust, scenarios, now):
        names = [o.rule for o in d.rules if o.rule != "arbitration"]
        assert names == ["audience"] or len(names) == 12
        effects = {o.effect for o in d.rules}
        if d.action == "contact":
            assert effects == {"pass"}
        if d.action == "suppress":
            assert "suppress" in effects
        if d.starts_conversation:
            assert d.total == sum(d.score.values()) or abs(d.total - sum(d.score.values())) < 1e-3
