"""Each hard rule as a pure function of a Situation."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from omnicrm.domain import rules
from omnicrm.domain.facts import SAMPLE_CUSTOMER, CustomerFacts, EventFacts, InstanceFacts
from omnicrm.domain.policy import Policy
from omnicrm.domain.rules import Situation, permitted_channels
from omnicrm.domain.scenarios import Scenario, ScenarioSpec, compile_scenario

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # 14:00 in Kyiv
POLICY = Policy.model_validate(
    {
        "version": 3,
        "caps": {"per_day": 2, "per_week": 5},
        "channel_caps": {"sms": {"per_week": 2}},
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
ALL_CONSENTS = {(c, p): True for c in ("email", "sms", "webpush", "inapp") for p in ("service", "marketing")}


def make_scenario(**overrides: Any) -> Scenario:
    data: dict[str, Any] = {
        "id": "loan-reminder",
        "version": 1,
        "name": "Loan reminder",
        "purpose": "commercial",
        "product_class": "consumer_loan",
        "priority": 50,
        "trigger": {"event": "application.abandoned"},
        "goal": {"event": "application.completed"},
        "reentry": {"mode": "never"},
        "start": "push",
        "steps": {
            "push": {"send": {"channel": "webpush", "template": "push_msg"}, "next": "email"},
            "email": {"send": {"channel": "email", "template": "email_msg"}, "next": "done"},
            "done": {"end": "finished"},
        },
    }
    data.update(copy.deepcopy(overrides))
    return compile_scenario(ScenarioSpec.model_validate(data))


def make_event(
    type_: str = "application.abandoned", at: dt.datetime = NOW - dt.timedelta(hours=1), **attrs: Any
) -> EventFacts:
    return EventFacts(f"ev-{type_}-{at:%H%M}", type_, at, None, attrs or {"product_class": "consumer_loan"})


def customer(**changes: Any) -> CustomerFacts:
    changes.setdefault("consents", ALL_CONSENTS)
    return replace(SAMPLE_CUSTOMER, **changes)


def situation(
    scenario: Scenario | None = None,
    cust: CustomerFacts | None = None,
    *,
    now: dt.datetime = NOW,
    channel: str | None = "webpush",
    policy: Policy = POLICY,
    event: EventFacts | None = None,
) -> Situation:
    return Situation(
        scenario or make_scenario(), cust or customer(), event or make_event(), now, policy, channel
    )


# ---------------------------------------------------------------- flags


def test_do_not_contact_suppresses_commercial() -> None:
    out = rules.do_not_contact(situation(cust=customer(do_not_contact=True)))
    assert (out.rule, out.effect) == ("do_not_contact", "suppress")


def test_do_not_contact_lets_service_through() -> None:
    out = rules.do_not_contact(situation(make_scenario(purpose="service"), customer(do_not_contact=True)))
    assert out.effect == "pass"


def test_do_not_contact_passes_without_flag() -> None:
    assert rules.do_not_contact(situation()).effect == "pass"


@pytest.mark.parametrize("purpose", ["commercial", "retention", "collections"])
def test_fraud_case_suppresses_all_but_service(purpose: str) -> None:
    out = rules.fraud_case(situation(make_scenario(purpose=purpose), customer(fraud_case_open=True)))
    assert (out.rule, out.effect) == ("fraud_case", "suppress")


def test_fraud_case_lets_service_through() -> None:
    out = rules.fraud_case(situation(make_scenario(purpose="service"), customer(fraud_case_open=True)))
    assert out.effect == "pass"


def test_open_complaint_suppresses_commercial() -> None:
    out = rules.open_complaint(situation(cust=customer(open_complaints=2)))
    assert (out.rule, out.effect) == ("open_complaint", "suppress")
    assert "2 open complaint" in out.detail


@pytest.mark.parametrize("purpose", ["service", "retention", "collections"])
def test_open_complaint_does_not_block_other_purposes(purpose: str) -> None:
    out = rules.open_complaint(situation(make_scenario(purpose=purpose), customer(open_complaints=1)))
    assert out.effect == "pass"


def test_vulnerable_goes_to_a_human() -> None:
    out = rules.vulnerable(situation(cust=customer(vulnerable=True)))
    assert (out.rule, out.effect) == ("vulnerable", "human")


def test_vulnerable_service_is_automatic() -> None:
    out = rules.vulnerable(situation(make_scenario(purpose="service"), customer(vulnerable=True)))
    assert out.effect == "pass"


# ---------------------------------------------------------------- channel


def test_channel_rule_suppresses_without_channel() -> None:
    out = rules.channel_permitted(situation(channel=None))
    assert (out.rule, out.effect) == ("channel", "suppress")


def test_channel_rule_passes_with_channel() -> None:
    out = rules.channel_permitted(situation(channel="email"))
    assert out.effect == "pass"
    assert "email" in out.detail


def test_permitted_channels_need_consent_for_the_purpose() -> None:
    cust = customer(consents={("webpush", "service"): True, ("email", "marketing"): True})
    assert permitted_channels(make_scenario(), cust) == ["email"]
    assert permitted_channels(make_scenario(purpose="service"), cust) == ["webpush"]
    assert permitted_channels(make_scenario(purpose="retention"), cust) == ["email"]


def test_permitted_channels_skip_the_blacklist() -> None:
    cust = customer(channel_blacklist=frozenset({"webpush"}))
    assert permitted_channels(make_scenario(), cust) == ["email"]


def test_permitted_channels_refuse_explicitly_withdrawn_consent() -> None:
    cust = customer(consents={("webpush", "marketing"): False, ("email", "marketing"): False})
    assert permitted_channels(make_scenario(), cust) == []


# ---------------------------------------------------------------- cooling off


def test_cooling_off_suppresses_a_recent_decline() -> None:
    cust = customer(declines={"consumer_loan": NOW - dt.timedelta(days=10)})
    out = rules.cooling_off(situation(make_scenario(cooling_off_days=30), cust))
    assert (out.rule, out.effect) == ("cooling_off", "suppress")


def test_cooling_off_passes_after_the_period() -> None:
    cust = customer(declines={"consumer_loan": NOW - dt.timedelta(days=40)})
    assert rules.cooling_off(situation(make_scenario(cooling_off_days=30), cust)).effect == "pass"


def test_cooling_off_ignores_other_products() -> None:
    cust = customer(declines={"deposit": NOW - dt.timedelta(days=1)})
    assert rules.cooling_off(situation(make_scenario(cooling_off_days=30), cust)).effect == "pass"


def test_cooling_off_zero_days_never_blocks() -> None:
    cust = customer(declines={"consumer_loan": NOW - dt.timedelta(days=1)})
    assert rules.cooling_off(situation(make_scenario(cooling_off_days=0), cust)).effect == "pass"


# ---------------------------------------------------------------- goal


def test_goal_after_the_trigger_suppresses() -> None:
    trigger = make_event(at=NOW - dt.timedelta(hours=2))
    goal = make_event("application.completed", at=NOW - dt.timedelta(hours=1))
    out = rules.goal_reached(situation(cust=customer(recent_events=(trigger, goal)), event=trigger))
    assert (out.rule, out.effect) == ("goal", "suppress")
    assert goal.event_id in out.detail


def test_goal_before_the_trigger_does_not_count() -> None:
    goal = make_event("application.completed", at=NOW - dt.timedelta(days=3))
    trigger = make_event(at=NOW - dt.timedelta(hours=1))
    out = rules.goal_reached(situation(cust=customer(recent_events=(goal, trigger)), event=trigger))
    assert out.effect == "pass"


def test_goal_condition_is_applied() -> None:
    scenario = make_scenario(
        goal={"event": "application.completed", "when": 'event.attributes.product_class == "consumer_loan"'}
    )
    trigger = make_event(at=NOW - dt.timedelta(hours=2))
    other = make_event("application.completed", at=NOW - dt.timedelta(hours=1), product_class="deposit")
    assert (
        rules.goal_reached(situation(scenario, customer(recent_events=(other,)), event=trigger)).effect
        == "pass"
    )
    same = make_event("application.completed", at=NOW - dt.timedelta(hours=1))
    out = rules.goal_reached(situation(scenario, customer(recent_events=(same,)), event=trigger))
    assert out.effect == "suppress"


# ---------------------------------------------------------------- re-entry


def instance(
    status: str = "completed", *, ended_days_ago: int | None = 5, goal: bool = False
) -> InstanceFacts:
    ended = NOW - dt.timedelta(days=ended_days_ago) if ended_days_ago is not None else None
    return InstanceFacts("loan-reminder", 1, "commercial", status, NOW - dt.timedelta(days=60), ended, goal)


def test_reentry_first_time_passes() -> None:
    assert rules.reentry(situation()).effect == "pass"


def test_reentry_active_instance_joins() -> None:
    out = rules.reentry(situation(cust=customer(instances=(instance("active", ended_days_ago=None),))))
    assert (out.rule, out.effect) == ("reentry", "join")


def test_reentry_never_suppresses_after_a_past_run() -> None:
    out = rules.reentry(situation(cust=customer(instances=(instance(ended_days_ago=300),))))
    assert (out.rule, out.effect) == ("reentry", "suppress")


def test_reentry_other_scenario_does_not_count() -> None:
    other = replace(instance(), scenario_id="something-else")
    assert rules.reentry(situation(cust=customer(instances=(other,)))).effect == "pass"


@pytest.mark.parametrize(("ended_days_ago", "effect"), [(10, "suppress"), (29, "suppress"), (31, "pass")])
def test_reentry_after_days_window(ended_days_ago: int, effect: str) -> None:
    scenario = make_scenario(reentry={"mode": "after_days", "days": 30})
    cust = customer(instances=(instance(ended_days_ago=ended_days_ago),))
    assert rules.reentry(situation(scenario, cust)).effect == effect


def test_reentry_after_days_uses_the_latest_run() -> None:
    scenario = make_scenario(reentry={"mode": "after_days", "days": 30})
    cust = customer(instances=(instance(ended_days_ago=100), instance(ended_days_ago=3)))
    assert rules.reentry(situation(scenario, cust)).effect == "suppress"


def test_reentry_unless_goal() -> None:
    scenario = make_scenario(reentry={"mode": "unless_goal"})
    reached = customer(instances=(instance(goal=True),))
    assert rules.reentry(situation(scenario, reached)).effect == "suppress"
    missed = customer(instances=(instance(goal=False),))
    assert rules.reentry(situation(scenario, missed)).effect == "pass"


# ---------------------------------------------------------------- frequency caps


def test_frequency_cap_per_day_delays_until_a_slot_frees() -> None:
    first = NOW - dt.timedelta(hours=5)
    contacts = (("email", "commercial", first), ("sms", "retention", NOW - dt.timedelta(hours=1)))
    out = rules.frequency_cap(situation(cust=customer(contacts=contacts)))
    assert (out.rule, out.effect) == ("frequency_cap", "delay")
    assert out.until == first + dt.timedelta(hours=24)


def test_frequency_cap_ignores_service_contacts() -> None:
    contacts = (
        ("email", "service", NOW - dt.timedelta(hours=5)),
        ("sms", "service", NOW - dt.timedelta(hours=1)),
    )
    assert rules.frequency_cap(situation(cust=customer(contacts=contacts))).effect == "pass"


def test_frequency_cap_service_purpose_is_exempt() -> None:
    contacts = tuple(("email", "commercial", NOW - dt.timedelta(hours=h)) for h in (1, 2, 3))
    out = rules.frequency_cap(situation(make_scenario(purpose="service"), customer(contacts=contacts)))
    assert out.effect == "pass"


def test_frequency_cap_old_contacts_do_not_count_for_the_day() -> None:
    contacts = (
        ("email", "commercial", NOW - dt.timedelta(hours=30)),
        ("email", "commercial", NOW - dt.timedelta(hours=1)),
    )
    assert rules.frequency_cap(situation(cust=customer(contacts=contacts))).effect == "pass"


def test_frequency_cap_per_week() -> None:
    times = [NOW - dt.timedelta(days=d) for d in (6, 5, 4, 3, 2)]
    contacts = tuple(("email", "commercial", t) for t in times)
    out = rules.frequency_cap(situation(cust=customer(contacts=contacts)))
    assert out.effect == "delay"
    assert out.until == times[0] + dt.timedelta(days=7)


def test_frequency_cap_per_channel() -> None:
    times = [NOW - dt.timedelta(days=d) for d in (4, 2)]
    contacts = tuple(("sms", "commercial", t) for t in times)
    assert rules.frequency_cap(situation(cust=customer(contacts=contacts), channel="email")).effect == "pass"
    out = rules.frequency_cap(situation(cust=customer(contacts=contacts), channel="sms"))
    assert out.effect == "delay"
    assert out.until == times[0] + dt.timedelta(days=7)


def test_frequency_cap_of_zero_blocks_without_crashing() -> None:
    policy = POLICY.model_copy(update={"caps": POLICY.caps.model_copy(update={"per_day": 0})})
    out = rules.frequency_cap(situation(policy=policy))
    assert out.effect in ("delay", "suppress")


# ---------------------------------------------------------------- quiet hours


def test_quiet_hours_pass_in_the_afternoon() -> None:
    out = rules.quiet_hours(situation())
    assert (out.rule, out.effect) == ("quiet_hours", "pass")
    assert "14:00" in out.detail


def test_quiet_hours_delay_until_morning_in_utc() -> None:
    late = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)  # 22:30 in Kyiv (UTC+2 in winter)
    out = rules.quiet_hours(situation(now=late))
    assert (out.rule, out.effect) == ("quiet_hours", "delay")
    assert out.until == dt.datetime(2026, 11, 21, 7, 0, tzinfo=UTC)  # 09:00 Kyiv
    assert out.until.utcoffset() == dt.timedelta(0)


def test_quiet_hours_after_midnight_resume_same_morning() -> None:
    early = dt.datetime(2026, 11, 21, 0, 30, tzinfo=UTC)  # 02:30 Kyiv
    out = rules.quiet_hours(situation(now=early))
    assert out.effect == "delay"
    assert out.until == dt.datetime(2026, 11, 21, 7, 0, tzinfo=UTC)


def test_quiet_hours_summer_time() -> None:
    late = dt.datetime(2026, 7, 1, 19, 30, tzinfo=UTC)  # 22:30 in Kyiv (UTC+3 in summer)
    out = rules.quiet_hours(situation(now=late))
    assert out.until == dt.datetime(2026, 7, 2, 6, 0, tzinfo=UTC)


def test_quiet_hours_use_the_clients_zone() -> None:
    late = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)  # 20:30 in London: not quiet
    assert rules.quiet_hours(situation(cust=customer(timezone="Europe/London"), now=late)).effect == "pass"


def test_quiet_hours_service_email_is_not_held() -> None:
    late = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)
    out = rules.quiet_hours(situation(make_scenario(purpose="service"), now=late, channel="email"))
    assert out.effect == "pass"


def test_quiet_hours_boundaries() -> None:
    at_nine = dt.datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # 09:00 Kyiv: quiet time is over
    assert rules.quiet_hours(situation(now=at_nine)).effect == "pass"
    at_nine_pm = dt.datetime(2026, 11, 20, 19, 0, tzinfo=UTC)  # 21:00 Kyiv: quiet time begins
    assert rules.quiet_hours(situation(now=at_nine_pm)).effect == "delay"


def test_rules_run_in_documented_order() -> None:
    names = [rule(situation()).rule for rule in rules.RULES]
    assert names == [
        "do_not_contact",
        "fraud_case",
        "open_complaint",
        "channel",
        "cooling_off",
        "recently_acquired",
        "goal",
        "reentry",
        "vulnerable",
        "frequency_cap",
        "quiet_hours",
    ]


# ---------------------------------------------------------------- cap_state


def _commercial(*ago: dt.timedelta, channel: str = "email") -> tuple[tuple[str, str, dt.datetime], ...]:
    return tuple((channel, "commercial", NOW - a) for a in ago)


def _policy(**changes: Any) -> Policy:
    return Policy.model_validate({**POLICY.model_dump(), **changes})


def test_cap_state_within_the_limits_is_free() -> None:
    state = rules.cap_state(_commercial(dt.timedelta(hours=1)), POLICY, NOW, "commercial", "email")
    assert state == rules.CapState(closed=None, until=None)


def test_cap_state_per_day_global_counts_every_channel() -> None:
    contacts = (
        ("email", "commercial", NOW - dt.timedelta(hours=5)),
        ("sms", "retention", NOW - dt.timedelta(hours=1)),
    )
    for channel in ("email", "webpush"):
        state = rules.cap_state(contacts, POLICY, NOW, "commercial", channel)
        assert state == rules.CapState(until=NOW + dt.timedelta(hours=19))


def test_cap_state_day_window_slides() -> None:
    exactly_a_day = _commercial(dt.timedelta(hours=24), dt.timedelta(hours=1))
    assert rules.cap_state(exactly_a_day, POLICY, NOW, "commercial", "email").until is None
    just_inside = _commercial(dt.timedelta(hours=23, minutes=59), dt.timedelta(hours=1))
    state = rules.cap_state(just_inside, POLICY, NOW, "commercial", "email")
    assert state.until == NOW + dt.timedelta(minutes=1)


def test_cap_state_per_week_global() -> None:
    contacts = _commercial(*(dt.timedelta(days=d) for d in (6, 5, 4, 3, 2)))
    state = rules.cap_state(contacts, POLICY, NOW, "commercial", "email")
    assert state == rules.CapState(until=NOW + dt.timedelta(days=1))


def test_cap_state_over_the_week_limit_waits_for_enough_slots() -> None:
    # six in the week against a limit of five: the two oldest must age out, so the second oldest decides
    contacts = _commercial(*(dt.timedelta(days=d) for d in (6, 5, 4, 3, 2, 1.5)))
    state = rules.cap_state(contacts, POLICY, NOW, "commercial", "email")
    assert state.until == NOW + dt.timedelta(days=2)


def test_cap_state_per_channel_only_counts_that_channel() -> None:
    contacts = _commercial(dt.timedelta(days=4), dt.timedelta(days=2), channel="sms")
    assert rules.cap_state(contacts, POLICY, NOW, "commercial", "sms").until == NOW + dt.timedelta(days=3)
    assert rules.cap_state(contacts, POLICY, NOW, "commercial", "email") == rules.CapState()


def test_cap_state_takes_the_latest_of_the_caps_reached() -> None:
    contacts = _commercial(
        dt.timedelta(days=6), dt.timedelta(hours=1), dt.timedelta(minutes=30), channel="sms"
    )
    # global day cap frees at now+23h, the sms week cap (3 of 2) only at now+7d-1h
    assert rules.cap_state(contacts, POLICY, NOW, "commercial", "email").until == NOW + dt.timedelta(hours=23)
    state = rules.cap_state(contacts, POLICY, NOW, "commercial", "sms")
    assert state.until == NOW + dt.timedelta(days=7, hours=-1)


def test_cap_state_ignores_contacts_of_exempt_purposes() -> None:
    contacts = tuple(("sms", "service", NOW - dt.timedelta(hours=h)) for h in (1, 2, 3, 4, 5, 6))
    assert rules.cap_state(contacts, POLICY, NOW, "commercial", "sms") == rules.CapState()


def test_cap_state_exempt_purpose_is_never_held_nor_closed() -> None:
    contacts = _commercial(*(dt.timedelta(hours=h) for h in (1, 2, 3, 4, 5, 6)), channel="sms")
    assert rules.cap_state(contacts, POLICY, NOW, "service", "sms") == rules.CapState()
    zero = _policy(caps={"per_day": 0, "per_week": 0}, channel_caps={"sms": {"per_day": 0}})
    assert rules.cap_state(contacts, zero, NOW, "service", "sms") == rules.CapState()


def test_cap_state_follows_the_policys_exempt_list() -> None:
    policy = _policy(exempt_from_caps=["service", "collections"])
    contacts = tuple(("email", "collections", NOW - dt.timedelta(hours=h)) for h in (1, 2, 3))
    assert rules.cap_state(contacts, policy, NOW, "commercial", "email") == rules.CapState()
    assert (
        rules.cap_state(
            _commercial(dt.timedelta(hours=1), dt.timedelta(hours=2)), policy, NOW, "collections", "email"
        )
        == rules.CapState()
    )
    # with the default list, collections contacts count and collections is capped
    assert rules.cap_state(contacts, POLICY, NOW, "commercial", "email").until is not None


@pytest.mark.parametrize(
    "caps", [{"per_day": 0, "per_week": 5}, {"per_day": 2, "per_week": 0}, {"per_day": 0}]
)
def test_cap_state_global_cap_of_zero_is_closed_at_all(caps: dict[str, int]) -> None:
    state = rules.cap_state((), _policy(caps=caps), NOW, "commercial", "email")
    assert state == rules.CapState(closed="at all", until=None)


def test_cap_state_channel_cap_of_zero_closes_that_channel_only() -> None:
    policy = _policy(channel_caps={"sms": {"per_day": 0}})
    assert rules.cap_state((), policy, NOW, "commercial", "sms") == rules.CapState(closed="on sms")
    assert rules.cap_state((), policy, NOW, "commercial", "email") == rules.CapState()


def test_frequency_cap_rule_suppresses_a_closed_channel() -> None:
    policy = _policy(channel_caps={"webpush": {"per_week": 0}})
    out = rules.frequency_cap(situation(policy=policy, channel="webpush"))
    assert (out.effect, out.detail) == ("suppress", "the policy allows no contact on webpush")


# ---------------------------------------------------------------- step_verdict (every later step)


def send_hold(
    cust: CustomerFacts,
    policy: Policy,
    now: dt.datetime,
    purpose: str,
    channel: str,
    kind: str,
    earlier: tuple[str, ...] = (),
) -> dt.datetime | None:
    """Until when step_verdict holds a follow-up send or task (caps, quiet hours), None: it goes."""
    consents = {**cust.consents, ("callcentre", "marketing"): True, ("callcentre", "service"): True}
    verdict = rules.step_verdict(
        make_scenario(purpose=purpose),
        replace(cust, consents=consents),
        make_event(),
        now,
        policy,
        kind=kind,
        channel=channel,
        earlier=earlier,
    )
    assert verdict.effect in ("go", "hold"), verdict
    return verdict.until


def verdict_for(
    cust: CustomerFacts, *, purpose: str = "commercial", kind: str = "send", channel: str = "email"
) -> rules.StepVerdict:
    return rules.step_verdict(
        make_scenario(purpose=purpose), cust, make_event(), NOW, POLICY, kind=kind, channel=channel
    )


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"do_not_contact": True}, "do_not_contact"),
        ({"fraud_case_open": True}, "fraud_case"),
        ({"open_complaints": 1}, "open_complaint"),
        ({"acquired": {"consumer_loan": NOW - dt.timedelta(days=3)}}, "recently_acquired"),
    ],
)
def test_step_verdict_a_stopping_rule_cancels_the_conversation(changes: dict[str, Any], rule: str) -> None:
    verdict = verdict_for(customer(**changes))
    assert (verdict.effect, verdict.outcome) == ("stop", f"cancelled_by_{rule}")
    assert [o.rule for o in verdict.outcomes if o.effect == "suppress"] == [rule]
    assert verdict.reason  # the words stored with the cancelled step


def test_step_verdict_a_reached_goal_ends_as_goal_reached() -> None:
    done = make_event("application.completed", NOW - dt.timedelta(minutes=5))
    verdict = verdict_for(customer(recent_events=(done,)))
    assert (verdict.effect, verdict.outcome) == ("stop", "goal_reached")


def test_step_verdict_a_channel_without_consent_is_skipped() -> None:
    consents = {**ALL_CONSENTS, ("email", "marketing"): False}
    verdict = verdict_for(customer(consents=consents))
    assert verdict.effect == "skip"
    assert verdict.reason == "no marketing consent on email"
    assert verdict_for(customer(consents=consents), purpose="service").effect == "go"


def test_step_verdict_a_blacklisted_channel_is_skipped() -> None:
    verdict = verdict_for(customer(channel_blacklist=frozenset({"email"})))
    assert (verdict.effect, verdict.reason) == ("skip", "email is blacklisted for this person")


def test_step_verdict_a_vulnerable_client_gets_a_person_but_an_escalation_goes() -> None:
    cust = customer(vulnerable=True, consents={**ALL_CONSENTS, ("callcentre", "marketing"): True})
    assert verdict_for(cust).effect == "person"
    assert verdict_for(cust, kind="escalate", channel="callcentre").effect == "go"


def test_step_verdict_lists_the_same_rules_as_a_first_decision_in_order() -> None:
    names = [o.rule for o in verdict_for(customer()).outcomes]
    assert names == [
        "do_not_contact",
        "fraud_case",
        "open_complaint",
        "channel",
        "recently_acquired",
        "goal",
        "vulnerable",
        "frequency_cap",
        "quiet_hours",
    ]


LATE = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)  # 22:30 in Kyiv: quiet time
MORNING = dt.datetime(2026, 11, 21, 7, 0, tzinfo=UTC)  # 09:00 in Kyiv: quiet time ends


def test_send_hold_within_the_limits_in_the_day_goes_now() -> None:
    cust = customer(contacts=_commercial(dt.timedelta(hours=2)))
    assert send_hold(cust, POLICY, NOW, "commercial", "email", "send") is None


def test_send_hold_counts_earlier_channels_as_contacts_now() -> None:
    cust = customer(contacts=_commercial(dt.timedelta(hours=2)))
    assert send_hold(cust, POLICY, NOW, "commercial", "email", "send", ()) is None
    until = send_hold(cust, POLICY, NOW, "commercial", "email", "send", ("webpush",))
    assert until == NOW + dt.timedelta(hours=22)  # the older contact ages out; 12:00 Kyiv


def test_send_hold_earlier_channels_alone_can_reach_the_cap() -> None:
    until = send_hold(customer(), POLICY, NOW, "commercial", "sms", "send", ("webpush", "email"))
    assert until == NOW + dt.timedelta(days=1)


def test_send_hold_earlier_channels_count_against_their_channel_cap() -> None:
    cust = customer(contacts=_commercial(dt.timedelta(days=3), channel="sms"))
    assert send_hold(cust, POLICY, NOW, "commercial", "sms", "send") is None
    assert send_hold(cust, POLICY, NOW, "commercial", "sms", "send", ("sms",)) == NOW + dt.timedelta(days=4)
    assert send_hold(cust, POLICY, NOW, "commercial", "email", "send", ("sms",)) is None


def test_send_hold_caps_tasks_too() -> None:
    cust = customer(contacts=_commercial(dt.timedelta(hours=2)))
    until = send_hold(cust, POLICY, NOW, "commercial", "callcentre", "escalate", ("email",))
    assert until == NOW + dt.timedelta(hours=22)


def test_send_hold_exempt_purpose_ignores_caps_and_earlier() -> None:
    cust = customer(contacts=_commercial(dt.timedelta(hours=1), dt.timedelta(hours=2)))
    assert send_hold(cust, POLICY, NOW, "service", "sms", "send", ("email", "webpush", "inapp")) is None


def test_send_hold_quiet_hours_hold_sends_but_not_tasks() -> None:
    assert send_hold(customer(), POLICY, LATE, "commercial", "email", "send") == MORNING
    assert send_hold(customer(), POLICY, LATE, "commercial", "callcentre", "escalate") is None


def test_send_hold_quiet_hours_hold_service_sms_but_not_silent_channels() -> None:
    assert send_hold(customer(), POLICY, LATE, "service", "sms", "send") == MORNING
    assert send_hold(customer(), POLICY, LATE, "service", "email", "send") is None
    assert send_hold(customer(), POLICY, LATE, "service", "inapp", "send") is None


def test_send_hold_a_slot_freed_in_quiet_hours_waits_for_their_end() -> None:
    contacts = (
        ("email", "commercial", dt.datetime(2026, 11, 19, 22, 0, tzinfo=UTC)),
        ("email", "commercial", dt.datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
    )
    cust = customer(contacts=contacts)
    freed = dt.datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # 00:00 in Kyiv: quiet time
    assert rules.cap_state(contacts, POLICY, NOW, "commercial", "email").until == freed
    until = send_hold(cust, POLICY, NOW, "commercial", "email", "send")
    assert until == MORNING
    assert until is not None
    assert until.utcoffset() == dt.timedelta(0)
    # a task only waits for the cap
    assert send_hold(cust, POLICY, NOW, "commercial", "callcentre", "escalate") == freed


def test_send_hold_quiet_hours_are_checked_in_the_clients_zone_at_the_freed_slot() -> None:
    contacts = (
        ("email", "commercial", dt.datetime(2026, 11, 19, 22, 0, tzinfo=UTC)),
        ("email", "commercial", dt.datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
    )
    london = customer(contacts=contacts, timezone="Europe/London")  # the slot frees at 22:00 London
    until = send_hold(london, POLICY, NOW, "commercial", "email", "send")
    assert until == dt.datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def test_send_hold_a_slot_freed_after_quiet_hours_is_not_moved_back() -> None:
    contacts = (
        ("email", "commercial", dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)),
        ("email", "commercial", dt.datetime(2026, 11, 20, 20, 0, tzinfo=UTC)),
    )
    until = send_hold(customer(contacts=contacts), POLICY, LATE, "commercial", "email", "send")
    assert until == dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # 12:00 Kyiv, not 09:00


def test_send_hold_a_slot_freed_exactly_when_quiet_hours_end_is_kept() -> None:
    contacts = (
        ("email", "commercial", dt.datetime(2026, 11, 20, 7, 0, tzinfo=UTC)),
        ("email", "commercial", dt.datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
    )
    assert send_hold(customer(contacts=contacts), POLICY, NOW, "commercial", "email", "send") == MORNING
