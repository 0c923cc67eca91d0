"""The pure scenario router: one instance moved through its routing table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from omnicrm.domain.facts import SAMPLE_CUSTOMER, CustomerFacts
from omnicrm.domain.router import Check, Effect, run
from omnicrm.domain.rules import RuleOutcome, StepVerdict
from omnicrm.domain.scenarios import (
    EventMatchSpec,
    ReentrySpec,
    Scenario,
    ScenarioSpec,
    Step,
    StepSpec,
    compile_scenario,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ALL = frozenset({"email", "sms", "webpush", "inapp", "callcentre"})

# push -> email -> done: two instantaneous sends and an end
TWO_SENDS: dict[str, Any] = {
    "push": {"send": {"channel": "webpush", "template": "push_msg"}, "next": "email"},
    "email": {"send": {"channel": "email", "template": "email_msg"}, "next": "done"},
    "done": {"end": "finished"},
}

# push, wait two days for a reaction, then thank / stop / remind by e-mail / call
CONVERSATION: dict[str, Any] = {
    "push": {"send": {"channel": "webpush", "template": "push_msg"}, "next": "wait"},
    "wait": {
        "wait": "2d",
        "routes": [
            {"when": 'reaction in ["opened", "clicked"]', "goto": "engaged"},
            {"when": 'reaction == "declined"', "goto": "declined"},
            {"goto": "reminder"},
        ],
    },
    "reminder": {"send": {"channel": "email", "template": "reminder_msg"}, "next": "call"},
    "call": {
        "escalate": {"queue": "loans", "reason": "No reaction to the loan reminder"},
        "next": "done",
    },
    "engaged": {"end": "engaged"},
    "declined": {"end": "declined"},
    "done": {"end": "finished"},
}


def make_scenario(steps: dict[str, Any], start: str, purpose: str = "commercial") -> Scenario:
    spec = ScenarioSpec.model_validate(
        {
            "id": "router-test",
            "version": 1,
            "name": "Router test",
            "purpose": purpose,
            "product_class": "consumer_loan",
            "priority": 50,
            "trigger": {"event": "application.abandoned"},
            "goal": {"event": "application.completed"},
            "reentry": {"mode": "never"},
            "start": start,
            "steps": steps,
        }
    )
    return compile_scenario(spec)


def context(cust: CustomerFacts = SAMPLE_CUSTOMER) -> dict[str, Any]:
    return {
        **cust.as_cel(),
        "event": {"type": "application.abandoned", "channel": "web", "attributes": {}},
    }


class Recorder:
    """A `hold` callback that records its calls and answers from a table (channel -> until)."""

    def __init__(self, answers: dict[str, dt.datetime | None] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []

    def __call__(self, channel: str, kind: str, earlier: tuple[str, ...]) -> dt.datetime | None:
        self.calls.append((channel, kind, earlier))
        return self.answers.get(channel)


def checks(permitted: Collection[str] = ALL, hold: Recorder | None = None) -> Check:
    """A `check` from the channels permitted and a `hold` answer per channel (the hard rules'
    verdicts, without the rules: domain/rules.step_verdict is tested in test_hard_rules.py)."""

    def check(name: str, step: Step, channel: str, earlier: tuple[str, ...]) -> StepVerdict:
        if channel not in permitted:
            why = f"{channel} is not permitted for this person now"
            return StepVerdict("skip", (RuleOutcome("channel", "suppress", why),))
        until = hold(channel, step.kind, earlier) if hold is not None else None
        if until is not None:
            return StepVerdict("hold", (RuleOutcome("frequency_cap", "delay", "held", until),), until)
        return StepVerdict("go")

    return check


# ---------------------------------------------------------------- send, wait, end


def test_send_step_emits_an_effect_and_moves_to_next() -> None:
    scenario = make_scenario(CONVERSATION, "push")
    out = run(scenario, "push", now=NOW, context=context(), check=checks(ALL))
    assert out.effects == (Effect("send", "push", "webpush", "push_msg"),)
    assert (out.step, out.status, out.outcome) == ("wait", "active", None)
    assert out.trail == ("push", "wait")


def test_consecutive_sends_run_in_one_go_until_the_end() -> None:
    out = run(make_scenario(TWO_SENDS, "push"), "push", now=NOW, context=context(), check=checks(ALL))
    assert out.effects == (
        Effect("send", "push", "webpush", "push_msg"),
        Effect("send", "email", "email", "email_msg"),
    )
    assert (out.step, out.status, out.due_at, out.outcome) == ("done", "completed", None, "finished")
    assert out.trail == ("push", "email", "done")


def test_wait_step_is_active_with_a_timer() -> None:
    scenario = make_scenario(CONVERSATION, "push")
    out = run(scenario, "wait", now=NOW, context=context(), check=checks(ALL))
    assert (out.step, out.status, out.outcome) == ("wait", "active", None)
    assert out.due_at == NOW + dt.timedelta(days=2)
    assert out.effects == ()
    assert out.trail == ("wait",)


def test_wait_timer_counts_from_now_after_a_send() -> None:
    scenario = make_scenario(CONVERSATION, "push")
    later = NOW + dt.timedelta(hours=5)
    out = run(scenario, "push", now=later, context=context(), check=checks(ALL))
    assert out.due_at == later + dt.timedelta(days=2)


def test_end_step_completes_with_its_outcome() -> None:
    out = run(make_scenario(TWO_SENDS, "push"), "done", now=NOW, context=context(), check=checks(ALL))
    assert (out.step, out.status, out.due_at, out.outcome) == ("done", "completed", None, "finished")
    assert out.effects == ()
    assert out.trail == ("done",)


# ---------------------------------------------------------------- resuming a wait


@pytest.mark.parametrize(
    ("reaction", "step", "outcome"),
    [
        ("clicked", "engaged", "engaged"),
        ("opened", "engaged", "engaged"),
        ("declined", "declined", "declined"),
    ],
)
def test_reaction_chooses_the_matching_route(reaction: str, step: str, outcome: str) -> None:
    scenario = make_scenario(CONVERSATION, "push")
    out = run(scenario, "wait", now=NOW, context=context(), check=checks(ALL), reaction=reaction)
    assert (out.step, out.status, out.outcome) == (step, "completed", outcome)
    assert out.effects == ()
    assert out.trail == ("wait", step)


@pytest.mark.parametrize("reaction", ["", "delivered"])
def test_timeout_or_unmatched_reaction_takes_the_unconditional_row(reaction: str) -> None:
    scenario = make_scenario(CONVERSATION, "push")
    out = run(scenario, "wait", now=NOW, context=context(), check=checks(ALL), reaction=reaction)
    assert out.effects == (
        Effect("send", "reminder", "email", "reminder_msg"),
        Effect("task", "call", "callcentre", queue="loans", note="No reaction to the loan reminder"),
    )
    assert (out.step, out.status, out.outcome) == ("done", "completed", "finished")
    assert out.trail == ("wait", "reminder", "call", "done")


def test_a_wait_without_reaction_is_not_resumed() -> None:
    scenario = make_scenario(CONVERSATION, "push")
    out = run(scenario, "wait", now=NOW, context=context(), check=checks(ALL), reaction=None)
    assert (out.step, out.status) == ("wait", "active")
    assert out.effects == ()


def test_a_wait_can_route_back_to_itself() -> None:
    steps: dict[str, Any] = {
        "wait": {
            "wait": "30m",
            "routes": [{"when": 'reaction == "delivered"', "goto": "wait"}, {"goto": "done"}],
        },
        "done": {"end": "finished"},
    }
    out = run(
        make_scenario(steps, "wait"),
        "wait",
        now=NOW,
        context=context(),
        check=checks(ALL),
        reaction="delivered",
    )
    assert (out.step, out.status, out.due_at) == ("wait", "active", NOW + dt.timedelta(minutes=30))
    assert out.trail == ("wait", "wait")


# ---------------------------------------------------------------- branch


BRANCHING: dict[str, Any] = {
    "check": {
        "branch": True,
        "routes": [
            {"when": 'customer.value_tier == "affluent"', "goto": "personal"},
            {
                "when": 'products.exists(p, p["class"] == "deposit" && p.state == "active")',
                "goto": "deposit",
            },
            {"goto": "mass"},
        ],
    },
    "personal": {"end": "personal"},
    "deposit": {"send": {"channel": "inapp", "template": "deposit_msg"}, "next": "done"},
    "mass": {"send": {"channel": "sms", "template": "mass_msg"}, "next": "done"},
    "done": {"end": "finished"},
}


def test_branch_on_the_profile() -> None:
    affluent = replace(SAMPLE_CUSTOMER, value_tier="affluent", products=(("deposit", "active"),))
    out = run(
        make_scenario(BRANCHING, "check"), "check", now=NOW, context=context(affluent), check=checks(ALL)
    )
    assert (out.step, out.outcome) == ("personal", "personal")
    assert out.trail == ("check", "personal")
    assert out.effects == ()


def test_branch_on_a_product() -> None:
    saver = replace(SAMPLE_CUSTOMER, products=(("card", "active"), ("deposit", "active")))
    out = run(make_scenario(BRANCHING, "check"), "check", now=NOW, context=context(saver), check=checks(ALL))
    assert out.effects == (Effect("send", "deposit", "inapp", "deposit_msg"),)
    assert out.trail == ("check", "deposit", "done")


@pytest.mark.parametrize("products", [(("card", "active"),), (("deposit", "closed"),), ()])
def test_branch_falls_through_to_the_unconditional_row(products: tuple[tuple[str, str], ...]) -> None:
    plain = replace(SAMPLE_CUSTOMER, products=products)
    out = run(make_scenario(BRANCHING, "check"), "check", now=NOW, context=context(plain), check=checks(ALL))
    assert out.effects == (Effect("send", "mass", "sms", "mass_msg"),)
    assert out.trail == ("check", "mass", "done")


def test_branch_sees_the_event() -> None:
    steps: dict[str, Any] = {
        "check": {
            "branch": True,
            "routes": [{"when": "event.attributes.amount > 1000", "goto": "big"}, {"goto": "small"}],
        },
        "big": {"end": "big"},
        "small": {"end": "small"},
    }
    ctx = {**context(), "event": {"type": "x.y", "channel": "", "attributes": {"amount": 5000}}}
    out = run(make_scenario(steps, "check"), "check", now=NOW, context=ctx, check=checks(ALL))
    assert out.outcome == "big"


# ---------------------------------------------------------------- escalate


def test_escalate_emits_a_call_centre_task() -> None:
    out = run(make_scenario(CONVERSATION, "push"), "call", now=NOW, context=context(), check=checks(ALL))
    assert out.effects == (
        Effect("task", "call", "callcentre", None, "loans", "No reaction to the loan reminder"),
    )
    task = out.effects[0]
    assert (task.kind, task.channel, task.queue, task.note, task.template) == (
        "task",
        "callcentre",
        "loans",
        "No reaction to the loan reminder",
        None,
    )
    assert (out.step, out.status, out.outcome) == ("done", "completed", "finished")


def test_escalate_without_call_centre_permission_is_skipped() -> None:
    out = run(
        make_scenario(CONVERSATION, "push"),
        "call",
        now=NOW,
        context=context(),
        check=checks(ALL - {"callcentre"}),
    )
    assert len(out.effects) == 1
    assert (out.effects[0].kind, out.effects[0].channel, out.effects[0].queue) == (
        "skipped",
        "callcentre",
        "loans",
    )
    assert out.outcome == "finished"


# ---------------------------------------------------------------- permitted channels


def test_send_on_a_channel_not_permitted_is_skipped_and_the_run_continues() -> None:
    out = run(make_scenario(TWO_SENDS, "push"), "push", now=NOW, context=context(), check=checks({"email"}))
    assert out.effects == (
        Effect(
            "skipped",
            "push",
            "webpush",
            "push_msg",
            None,
            "webpush is not permitted for this person now",
            (RuleOutcome("channel", "suppress", "webpush is not permitted for this person now"),),
        ),
        Effect("send", "email", "email", "email_msg"),
    )
    assert (out.step, out.status, out.outcome) == ("done", "completed", "finished")
    assert out.trail == ("push", "email", "done")


def test_nothing_permitted_skips_every_send() -> None:
    out = run(make_scenario(TWO_SENDS, "push"), "push", now=NOW, context=context(), check=checks(()))
    assert [e.kind for e in out.effects] == ["skipped", "skipped"]
    assert [e.channel for e in out.effects] == ["webpush", "email"]
    assert out.outcome == "finished"


# ---------------------------------------------------------------- hold


def test_a_future_hold_stops_on_that_send_without_emitting_it() -> None:
    later = NOW + dt.timedelta(hours=3)
    hold = Recorder({"email": later})
    out = run(make_scenario(TWO_SENDS, "push"), "push", now=NOW, context=context(), check=checks(ALL, hold))
    assert (out.step, out.status, out.due_at, out.outcome) == ("email", "active", later, None)
    # the hold is noted with its rule, so nothing waits without a stored reason
    assert [(e.kind, e.step, e.until) for e in out.effects] == [
        ("send", "push", None),
        ("held", "email", later),
    ]
    assert out.effects[1].rules[0].rule == "frequency_cap"
    assert out.trail == ("push", "email")
    # the callback sees the channels already contacted earlier in this run
    assert hold.calls == [("webpush", "send", ()), ("email", "send", ("webpush",))]


def test_a_hold_on_the_first_send_emits_nothing() -> None:
    later = NOW + dt.timedelta(minutes=1)
    hold = Recorder({"webpush": later})
    out = run(make_scenario(TWO_SENDS, "push"), "push", now=NOW, context=context(), check=checks(ALL, hold))
    assert (out.step, out.status, out.due_at) == ("push", "active", later)
    assert [(e.kind, e.step, e.until) for e in out.effects] == [("held", "push", later)]
    assert hold.calls == [("webpush", "send", ())]


def test_a_held_send_is_retried_from_its_step() -> None:
    """When the timer fires, running again from the held step sends it and carries on."""
    out = run(make_scenario(TWO_SENDS, "push"), "email", now=NOW, context=context(), check=checks(ALL))
    assert out.effects == (Effect("send", "email", "email", "email_msg"),)
    assert out.outcome == "finished"


@pytest.mark.parametrize(
    "until",
    [None, NOW - dt.timedelta(hours=1), NOW],
    ids=["none", "past", "now"],
)
def test_a_hold_in_the_past_or_none_lets_it_go(until: dt.datetime | None) -> None:
    hold = Recorder({"webpush": until, "email": until})
    out = run(make_scenario(TWO_SENDS, "push"), "push", now=NOW, context=context(), check=checks(ALL, hold))
    assert [e.kind for e in out.effects] == ["send", "send"]
    assert (out.status, out.due_at, out.outcome) == ("completed", None, "finished")
    assert hold.calls == [("webpush", "send", ()), ("email", "send", ("webpush",))]


def test_hold_is_not_consulted_for_a_channel_that_is_not_permitted() -> None:
    future = NOW + dt.timedelta(hours=2)
    hold = Recorder({"webpush": future, "email": future})
    out = run(
        make_scenario(TWO_SENDS, "push"),
        "push",
        now=NOW,
        context=context(),
        check=checks({"email"}, hold),
    )
    # webpush is skipped (not held), e-mail is held; the skipped send is not an earlier contact
    assert hold.calls == [("email", "send", ())]
    assert [(e.kind, e.channel) for e in out.effects] == [("skipped", "webpush"), ("held", "email")]
    assert (out.step, out.status, out.due_at) == ("email", "active", future)


def test_hold_is_consulted_for_a_task_with_its_kind_and_earlier_contacts() -> None:
    later = NOW + dt.timedelta(days=1)
    hold = Recorder({"callcentre": later})
    scenario = make_scenario(CONVERSATION, "push")
    out = run(scenario, "wait", now=NOW, context=context(), check=checks(ALL, hold), reaction="")
    assert hold.calls == [("email", "send", ()), ("callcentre", "escalate", ("email",))]
    assert [(e.kind, e.step) for e in out.effects] == [("send", "reminder"), ("held", "call")]
    assert (out.step, out.status, out.due_at) == ("call", "active", later)
    assert out.trail == ("wait", "reminder", "call")


def test_hold_is_not_consulted_for_wait_branch_or_end() -> None:
    hold = Recorder({"inapp": NOW + dt.timedelta(days=9)})
    saver = replace(SAMPLE_CUSTOMER, value_tier="affluent")
    out = run(
        make_scenario(BRANCHING, "check"), "check", now=NOW, context=context(saver), check=checks(ALL, hold)
    )
    assert out.outcome == "personal"
    assert hold.calls == []


# ---------------------------------------------------------------- loops


def unchecked_scenario(steps: dict[str, Any], start: str, purpose: str = "commercial") -> Scenario:
    """A scenario that skips the spec's whole-graph checks (as a hand-edited database row might)."""
    spec = ScenarioSpec.model_construct(
        id="router-test",
        version=1,
        name="Router test",
        purpose=purpose,
        product_class="consumer_loan",
        priority=50,
        trigger=EventMatchSpec(event="application.abandoned"),
        audience=None,
        goal=EventMatchSpec(event="application.completed"),
        reentry=ReentrySpec(mode="never"),
        cooling_off_days=0,
        migrate_from=[],
        start=start,
        steps={name: StepSpec.model_validate(step) for name, step in steps.items()},
    )
    return compile_scenario(spec)


BRANCH_LOOP: dict[str, Any] = {
    "one": {"branch": True, "routes": [{"goto": "two"}]},
    "two": {"branch": True, "routes": [{"when": "false", "goto": "done"}, {"goto": "one"}]},
    "done": {"end": "finished"},
}
SEND_LOOP: dict[str, Any] = {
    "one": {"send": {"channel": "sms", "template": "one_msg"}, "next": "two"},
    "two": {"send": {"channel": "email", "template": "two_msg"}, "next": "one"},
    "done": {"end": "finished"},
}


@pytest.mark.parametrize("steps", [BRANCH_LOOP, SEND_LOOP], ids=["branches", "sends"])
def test_a_table_looping_without_waiting_is_refused_at_load(steps: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="loop without a wait: the client would be flooded"):
        make_scenario(steps, "one")


def test_a_branch_loop_that_slipped_through_stops_with_routing_loop() -> None:
    out = run(unchecked_scenario(BRANCH_LOOP, "one"), "one", now=NOW, context=context(), check=checks(ALL))
    assert (out.status, out.outcome, out.due_at) == ("completed", "routing_loop", None)
    assert out.effects == ()
    assert len(out.trail) == 50
    assert set(out.trail) == {"one", "two"}


def test_a_send_loop_that_slipped_through_emits_each_step_once() -> None:
    scenario = unchecked_scenario(SEND_LOOP, "one", purpose="service")
    out = run(scenario, "one", now=NOW, context=context(), check=checks(ALL, Recorder()))
    assert (out.status, out.outcome) == ("completed", "routing_loop")
    assert [e.step for e in out.effects] == ["one", "two"]


def test_a_loop_through_a_wait_is_not_a_routing_loop() -> None:
    steps: dict[str, Any] = {
        "ping": {"send": {"channel": "inapp", "template": "ping_msg"}, "next": "wait"},
        "wait": {"wait": "1d", "routes": [{"when": 'reaction == ""', "goto": "ping"}, {"goto": "done"}]},
        "done": {"end": "finished"},
    }
    out = run(
        make_scenario(steps, "ping"), "wait", now=NOW, context=context(), check=checks(ALL), reaction=""
    )
    assert (out.step, out.status, out.due_at) == ("wait", "active", NOW + dt.timedelta(days=1))
    assert out.effects == (Effect("send", "ping", "inapp", "ping_msg"),)
    assert out.trail == ("wait", "ping", "wait")


def test_a_long_linear_table_is_not_mistaken_for_a_loop() -> None:
    """49 sends then an end (the 50-step maximum of a template) run to the end."""
    steps: dict[str, Any] = {
        f"s{i:02d}": {"send": {"channel": "inapp", "template": f"t{i:02d}"}, "next": f"s{i + 1:02d}"}
        for i in range(49)
    }
    steps["s49"] = {"end": "finished"}
    out = run(make_scenario(steps, "s00"), "s00", now=NOW, context=context(), check=checks(ALL))
    assert (out.status, out.outcome) == ("completed", "finished")
    assert len(out.effects) == 49


# ---------------------------------------------------------------- waits after a skipped send


def test_a_wait_after_a_skipped_send_moves_on_at_once() -> None:
    out = run(
        make_scenario(CONVERSATION, "push"),
        "push",
        now=NOW,
        context=context(),
        check=checks(ALL - {"webpush"}),
    )
    # no push went out, so there is nothing to wait two days for: straight to the e-mail reminder
    assert [(e.kind, e.step) for e in out.effects][:2] == [("skipped", "push"), ("send", "reminder")]
    assert out.trail[:3] == ("push", "wait", "reminder")


def test_a_wait_after_a_send_that_went_out_still_waits() -> None:
    out = run(make_scenario(CONVERSATION, "push"), "push", now=NOW, context=context(), check=checks(ALL))
    assert (out.step, out.status, out.due_at) == ("wait", "active", NOW + dt.timedelta(days=2))
    assert [e.kind for e in out.effects] == ["send"]


def test_a_reminder_loop_with_nothing_permitted_ends_unreachable() -> None:
    steps: dict[str, Any] = {
        "ping": {"send": {"channel": "inapp", "template": "ping_msg"}, "next": "wait"},
        "wait": {
            "wait": "1d",
            "routes": [{"when": 'reaction == "clicked"', "goto": "done"}, {"goto": "ping"}],
        },
        "done": {"end": "finished"},
    }
    out = run(make_scenario(steps, "ping"), "ping", now=NOW, context=context(), check=checks(frozenset()))
    assert (out.status, out.outcome) == ("completed", "unreachable")
    assert [e.kind for e in out.effects] == ["skipped"]
