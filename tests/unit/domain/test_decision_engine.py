"""decide / triggered / score / arbitrate and explain."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omnicrm.domain.decision import Decision, arbitrate, decide, score, triggered
from omnicrm.domain.explain import explain
from omnicrm.domain.facts import SAMPLE_CUSTOMER, CustomerFacts, EventFacts, InstanceFacts
from omnicrm.domain.policy import Policy
from omnicrm.domain.scenarios import Scenario, ScenarioSpec, compile_scenario

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # 14:00 in Kyiv
POLICY = Policy.model_validate(
    {
        "version": 7,
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


def make_scenario(id_: str = "loan-reminder", **overrides: Any) -> Scenario:
    data: dict[str, Any] = {
        "id": id_,
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
    return EventFacts(f"ev-{type_}", type_, at, "web", attrs or {"product_class": "consumer_loan"})


def customer(**changes: Any) -> CustomerFacts:
    changes.setdefault("consents", ALL_CONSENTS)
    return replace(SAMPLE_CUSTOMER, **changes)


def rule_of(decision: Decision, name: str) -> str:
    return next(o.effect for o in decision.rules if o.rule == name)


def one(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1
    return decisions[0]


# ---------------------------------------------------------------- triggered


def test_triggered_matches_event_type() -> None:
    loan = make_scenario()
    other = make_scenario("card-reminder", trigger={"event": "card.issued"})
    assert triggered([loan, other], customer(), make_event()) == [loan]
    assert triggered([loan, other], customer(), make_event("card.issued", contract_number="c1")) == [other]


def test_triggered_applies_the_trigger_condition() -> None:
    loan = make_scenario(
        trigger={
            "event": "application.abandoned",
            "when": 'event.attributes.product_class == "consumer_loan"',
        }
    )
    assert triggered([loan], customer(), make_event()) == [loan]
    assert triggered([loan], customer(), make_event(product_class="deposit")) == []


def test_decide_ignores_untriggered_scenarios() -> None:
    assert decide(customer(), make_event("card.issued"), [make_scenario()], POLICY, NOW) == []


# ---------------------------------------------------------------- single decisions


def test_plain_contact_on_first_permitted_channel() -> None:
    d = one(decide(customer(), make_event(), [make_scenario()], POLICY, NOW))
    assert (d.action, d.channel, d.due_at) == ("contact", "webpush", NOW)
    assert d.starts_conversation
    assert (d.customer_id, d.scenario_id, d.scenario_version, d.policy_version) == (
        "sample",
        "loan-reminder",
        1,
        7,
    )
    assert d.event_id == "ev-application.abandoned"


def test_every_decision_lists_every_rule() -> None:
    d = one(decide(customer(), make_event(), [make_scenario()], POLICY, NOW))
    assert [o.rule for o in d.rules] == [
        "audience",
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
    assert all(o.effect == "pass" for o in d.rules)


def test_suppressed_decision_still_lists_every_rule() -> None:
    d = one(
        decide(customer(do_not_contact=True, vulnerable=True), make_event(), [make_scenario()], POLICY, NOW)
    )
    assert d.action == "suppress"
    assert d.due_at is None
    assert len(d.rules) == 12
    assert rule_of(d, "vulnerable") == "human"
    assert d.score == {}
    assert d.total == 0.0


def test_audience_false_suppresses_with_audience_rule() -> None:
    scenario = make_scenario(audience='customer.status == "prospect"')
    d = one(decide(customer(), make_event(), [scenario], POLICY, NOW))
    assert d.action == "suppress"
    assert [(o.rule, o.effect) for o in d.rules] == [("audience", "suppress")]


def test_audience_true_runs_the_rules() -> None:
    scenario = make_scenario(audience='customer.status == "client"')
    d = one(decide(customer(), make_event(), [scenario], POLICY, NOW))
    assert d.action == "contact"
    assert rule_of(d, "audience") == "pass"


def test_no_consent_suppresses() -> None:
    d = one(
        decide(
            customer(consents={("webpush", "service"): True}), make_event(), [make_scenario()], POLICY, NOW
        )
    )
    assert d.action == "suppress"
    assert rule_of(d, "channel") == "suppress"


def test_blacklisted_channel_is_skipped_for_the_next_permitted_one() -> None:
    cust = customer(channel_blacklist=frozenset({"webpush"}))
    d = one(decide(cust, make_event(), [make_scenario()], POLICY, NOW))
    assert (d.action, d.channel) == ("contact", "email")


def test_missing_consent_skips_to_the_next_channel() -> None:
    cust = customer(consents={("webpush", "marketing"): False, ("email", "marketing"): True})
    d = one(decide(cust, make_event(), [make_scenario()], POLICY, NOW))
    assert d.channel == "email"


def test_vulnerable_client_escalates_to_callcentre() -> None:
    d = one(decide(customer(vulnerable=True), make_event(), [make_scenario()], POLICY, NOW))
    assert (d.action, d.channel) == ("escalate", "callcentre")
    assert d.starts_conversation


def test_active_instance_joins() -> None:
    running = InstanceFacts("loan-reminder", 1, "commercial", "active", NOW - dt.timedelta(days=1))
    d = one(decide(customer(instances=(running,)), make_event(), [make_scenario()], POLICY, NOW))
    assert d.action == "join"
    assert not d.starts_conversation
    assert d.due_at is None


def test_frequency_cap_delays_to_the_freed_slot() -> None:
    first = NOW - dt.timedelta(hours=3)
    contacts = (("email", "commercial", first), ("webpush", "commercial", NOW - dt.timedelta(hours=1)))
    d = one(decide(customer(contacts=contacts), make_event(), [make_scenario()], POLICY, NOW))
    assert (d.action, d.due_at) == ("delay", first + dt.timedelta(hours=24))


def test_delay_waits_for_the_latest_reason() -> None:
    late = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)  # 22:30 Kyiv
    first = late - dt.timedelta(hours=3)
    contacts = (("email", "commercial", first), ("webpush", "commercial", late - dt.timedelta(hours=1)))
    d = one(decide(customer(contacts=contacts), make_event(at=late), [make_scenario()], POLICY, late))
    assert d.action == "delay"
    assert d.due_at == first + dt.timedelta(hours=24)  # later than 09:00 Kyiv next morning
    assert rule_of(d, "quiet_hours") == "delay"
    assert rule_of(d, "frequency_cap") == "delay"


def test_quiet_hours_delay_in_decide() -> None:
    late = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)
    d = one(decide(customer(), make_event(at=late), [make_scenario()], POLICY, late))
    assert (d.action, d.due_at) == ("delay", dt.datetime(2026, 11, 21, 7, 0, tzinfo=UTC))


def test_cap_delay_never_lands_in_quiet_hours() -> None:
    # Five marketing contacts, all sent in daytime; the oldest (20:30 Kyiv winter time) frees its slot
    # a week later at 18:30 UTC, which after the switch to summer time is 21:30 Kyiv: quiet time.
    now = dt.datetime(2026, 4, 1, 10, 0, tzinfo=UTC)  # 13:00 Kyiv
    sent = [dt.datetime(2026, 3, 25, 18, 30, tzinfo=UTC)]
    sent += [dt.datetime(2026, 3, d, 10, 0, tzinfo=UTC) for d in (27, 28, 29, 30)]
    contacts = tuple(("email", "commercial", at) for at in sent)
    d = one(decide(customer(contacts=contacts), make_event(at=now), [make_scenario()], POLICY, now))
    assert d.action == "delay"
    assert d.due_at is not None
    local = d.due_at.astimezone(ZoneInfo("Europe/Kyiv")).time()
    assert dt.time(9) <= local < dt.time(21), local


# ---------------------------------------------------------------- arbitration


def two_offers() -> tuple[Scenario, Scenario]:
    loan = make_scenario("loan-offer")
    card = make_scenario("card-offer", product_class="card")
    return loan, card


def test_two_commercial_offers_only_the_higher_score_contacts() -> None:
    loan, card = two_offers()
    interest = tuple(
        make_event("tariff_page.visited", at=NOW - dt.timedelta(hours=h), product_class="card")
        for h in (2, 3, 4)
    )
    decisions = decide(customer(recent_events=interest), make_event(), [loan, card], POLICY, NOW)
    by_id = {d.scenario_id: d for d in decisions}
    assert by_id["card-offer"].total > by_id["loan-offer"].total
    assert by_id["card-offer"].action == "contact"
    loser = by_id["loan-offer"]
    assert loser.action == "suppress"
    assert loser.due_at is None
    assert loser.rules[-1].rule == "arbitration"
    assert loser.rules[-1].effect == "suppress"
    assert "card-offer" in loser.rules[-1].detail
    assert "card-offer" in loser.arbitration
    assert [d.scenario_id for d in decisions] == ["loan-offer", "card-offer"]  # input order kept


def test_equal_scores_break_ties_by_id() -> None:
    loan, card = two_offers()
    decisions = decide(customer(), make_event(), [loan, card], POLICY, NOW)
    by_id = {d.scenario_id: d for d in decisions}
    assert by_id["card-offer"].action == "contact"
    assert by_id["loan-offer"].action == "suppress"


def test_running_commercial_instance_blocks_a_new_offer() -> None:
    running = InstanceFacts("deposit-offer", 2, "commercial", "active", NOW - dt.timedelta(days=2))
    d = one(decide(customer(instances=(running,)), make_event(), [make_scenario()], POLICY, NOW))
    assert d.action == "suppress"
    assert d.rules[-1].rule == "arbitration"
    assert "deposit-offer" in d.rules[-1].detail


def test_running_service_instance_does_not_block_an_offer() -> None:
    running = InstanceFacts("card-activation", 1, "service", "active", NOW - dt.timedelta(days=2))
    d = one(decide(customer(instances=(running,)), make_event(), [make_scenario()], POLICY, NOW))
    assert d.action == "contact"


def test_service_and_retention_pass_alongside_a_commercial_offer() -> None:
    offer = make_scenario("loan-offer")
    service = make_scenario("loan-help", purpose="service")
    retention = make_scenario("loan-keep", purpose="retention")
    decisions = decide(customer(), make_event(), [offer, service, retention], POLICY, NOW)
    assert {d.scenario_id: d.action for d in decisions} == {
        "loan-offer": "contact",
        "loan-help": "contact",
        "loan-keep": "contact",
    }


def test_arbitrate_leaves_non_starting_decisions_alone() -> None:
    loan, card = two_offers()
    running = InstanceFacts("card-offer", 1, "commercial", "active", NOW - dt.timedelta(days=1))
    decisions = decide(customer(instances=(running,)), make_event(), [loan, card], POLICY, NOW)
    by_id = {d.scenario_id: d for d in decisions}
    assert by_id["card-offer"].action == "join"
    assert by_id["loan-offer"].action == "suppress"
    assert all(o.rule != "arbitration" for o in by_id["card-offer"].rules)


def test_arbitrate_empty() -> None:
    assert arbitrate([], customer()) == []


# ---------------------------------------------------------------- score


@pytest.mark.parametrize("tier", ["mass", "affluent", "premium", "private", None])
def test_score_terms_within_weights_and_total_is_their_sum(tier: str | None) -> None:
    cust = customer(
        value_tier=tier,
        responses={"webpush": (10, 7)},
        contact_window=(dt.time(8), dt.time(12)),
        recent_events=tuple(make_event(at=NOW - dt.timedelta(hours=h)) for h in range(7)),
    )
    d = one(decide(cust, make_event(), [make_scenario()], POLICY, NOW))
    weights = POLICY.score_weights.model_dump()
    assert set(d.score) == set(weights)
    for name, value in d.score.items():
        assert 0 <= value <= weights[name]
    assert d.total == pytest.approx(sum(d.score.values()), abs=1e-4)


def test_score_terms() -> None:
    event = make_event(at=NOW)
    terms = score(make_scenario(), customer(value_tier="private"), event, "email", POLICY, NOW)
    assert terms["recency"] == pytest.approx(0.3)
    assert terms["interest"] == 0.0
    assert terms["response"] == pytest.approx(0.1)  # no history: one half
    assert terms["value"] == pytest.approx(0.15)
    assert terms["time_of_day"] == pytest.approx(0.1)


def test_score_future_event_does_not_exceed_weight() -> None:
    terms = score(make_scenario(), customer(), make_event(at=NOW + dt.timedelta(hours=5)), None, POLICY, NOW)
    assert terms["recency"] == pytest.approx(0.3)


def test_score_outside_contact_window_halves_time_of_day() -> None:
    cust = customer(contact_window=(dt.time(18), dt.time(20)))  # 14:00 Kyiv is outside
    terms = score(make_scenario(), cust, make_event(), "email", POLICY, NOW)
    assert terms["time_of_day"] == pytest.approx(0.05)


# ---------------------------------------------------------------- explain


def stored(decision: Decision) -> dict[str, Any]:
    return {**dataclasses.asdict(decision), "decided_at": NOW}


def test_explain_mentions_action_rules_and_versions() -> None:
    d = one(decide(customer(), make_event(), [make_scenario()], POLICY, NOW))
    text = explain(stored(d))
    assert "contact now via webpush" in text
    for outcome in d.rules:
        assert f"{outcome.rule}: ok - {outcome.detail}" in text
    assert "Versions: scenario 1, policy 7." in text
    assert "Score" in text
    assert "loan-reminder v1 (commercial)" in text
    assert "2026-11-20 12:00 UTC" in text


def test_explain_delay_and_arbitration() -> None:
    loan, card = two_offers()
    late = dt.datetime(2026, 11, 20, 20, 30, tzinfo=UTC)
    decisions = decide(customer(), make_event(at=late), [loan, card], POLICY, late)
    by_id = {d.scenario_id: d for d in decisions}
    winner = explain(stored(by_id["card-offer"]))
    assert "contact later via webpush at 2026-11-21 07:00 UTC" in winner
    assert "quiet_hours: postpones" in winner
    assert "Arbitration: chosen among the commercial offers." in winner
    loser = explain(stored(by_id["loan-offer"]))
    assert "do not contact" in loser
    assert "arbitration: blocks" in loser
    assert "card-offer" in loser


def test_explain_suppressed_by_audience() -> None:
    d = one(decide(customer(), make_event(), [make_scenario(audience="false")], POLICY, NOW))
    text = explain(stored(d))
    assert "do not contact" in text
    assert "audience: blocks" in text
    assert "Score" not in text


def test_a_kept_context_sees_each_new_event_and_decides_as_a_fresh_one() -> None:
    loan = make_scenario(
        trigger={
            "event": "application.abandoned",
            "when": 'event.attributes.product_class == "consumer_loan"',
        },
        audience='customer.status == "client"',
    )
    person = customer()
    kept: dict[str, Any] = {}
    for product in ("consumer_loan", "deposit", "consumer_loan"):
        event = make_event(product_class=product)
        fresh = decide(person, event, [loan], POLICY, NOW)
        reused = decide(person, event, [loan], POLICY, NOW, kept)
        assert reused == fresh
        assert len(reused) == (1 if product == "consumer_loan" else 0)
    assert list(kept) == [person.id]  # one context per customer
