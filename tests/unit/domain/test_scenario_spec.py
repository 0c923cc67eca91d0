"""ScenarioSpec validation, compile_scenario and the compiled Scenario's helpers."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from omnicrm.domain.scenarios import ScenarioSpec, compile_scenario, parse_duration


def spec_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
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
            "push": {"send": {"channel": "webpush", "template": "push_msg"}, "next": "wait"},
            "wait": {
                "wait": "24h",
                "routes": [{"when": 'reaction == "clicked"', "goto": "done"}, {"goto": "email"}],
            },
            "email": {"send": {"channel": "email", "template": "email_msg"}, "next": "call"},
            "call": {"escalate": {"queue": "loans", "reason": "no reaction"}, "next": "done"},
            "done": {"end": "finished"},
        },
    }
    base.update(copy.deepcopy(overrides))
    return base


def test_valid_spec_compiles() -> None:
    scenario = compile_scenario(ScenarioSpec.model_validate(spec_dict()))
    assert scenario.key == "loan-reminder@1"
    assert scenario.steps["wait"].wait == timedelta(hours=24)
    assert scenario.steps["call"].channel == "callcentre"
    assert scenario.steps["done"].kind == "end"


@pytest.mark.parametrize(
    "step",
    [
        {"send": {"channel": "sms", "template": "t_one"}, "end": "finished"},
        {"send": {"channel": "sms", "template": "t_one"}, "wait": "1h", "next": "done"},
        {"branch": True, "escalate": {"queue": "q1", "reason": "why"}, "next": "done"},
        {},
    ],
    ids=["send+end", "send+wait", "branch+escalate", "nothing"],
)
def test_step_must_do_exactly_one_action(step: dict[str, Any]) -> None:
    data = spec_dict()
    data["steps"]["push"] = step
    with pytest.raises(ValidationError, match="exactly one"):
        ScenarioSpec.model_validate(data)


def test_wait_needs_unconditional_last_route() -> None:
    data = spec_dict()
    data["steps"]["wait"]["routes"] = [{"when": 'reaction == "clicked"', "goto": "done"}]
    with pytest.raises(ValidationError, match="unconditional"):
        ScenarioSpec.model_validate(data)


def test_wait_without_routes_is_refused() -> None:
    data = spec_dict()
    data["steps"]["wait"]["routes"] = []
    with pytest.raises(ValidationError, match="unconditional"):
        ScenarioSpec.model_validate(data)


def test_branch_needs_unconditional_last_route() -> None:
    data = spec_dict()
    data["steps"]["wait"] = {"branch": True, "routes": [{"when": "true", "goto": "done"}]}
    with pytest.raises(ValidationError, match="unconditional"):
        ScenarioSpec.model_validate(data)


def test_send_without_next_is_refused() -> None:
    data = spec_dict()
    del data["steps"]["push"]["next"]
    with pytest.raises(ValidationError, match="need `next`"):
        ScenarioSpec.model_validate(data)


def test_escalate_without_next_is_refused() -> None:
    data = spec_dict()
    del data["steps"]["call"]["next"]
    with pytest.raises(ValidationError, match="need `next`"):
        ScenarioSpec.model_validate(data)


def test_end_step_with_next_is_refused() -> None:
    data = spec_dict()
    data["steps"]["done"]["next"] = "push"
    with pytest.raises(ValidationError, match="end step"):
        ScenarioSpec.model_validate(data)


def test_goto_undefined_step_is_refused() -> None:
    data = spec_dict()
    data["steps"]["wait"]["routes"][-1]["goto"] = "nowhere"
    with pytest.raises(ValidationError, match="undefined step 'nowhere'"):
        ScenarioSpec.model_validate(data)


def test_next_to_undefined_step_is_refused() -> None:
    data = spec_dict()
    data["steps"]["push"]["next"] = "missing"
    with pytest.raises(ValidationError, match="undefined step 'missing'"):
        ScenarioSpec.model_validate(data)


def test_undefined_start_is_refused() -> None:
    with pytest.raises(ValidationError, match="start step"):
        ScenarioSpec.model_validate(spec_dict(start="nope"))


def test_scenario_without_end_step_is_refused() -> None:
    data = spec_dict()
    data["steps"] = {
        "push": {"send": {"channel": "webpush", "template": "push_msg"}, "next": "push"},
    }
    with pytest.raises(ValidationError, match="end step"):
        ScenarioSpec.model_validate(data)


@pytest.mark.parametrize("duration", ["24", "1w", "h", "-1h", "1.5h", "24 h"])
def test_bad_wait_duration_is_refused(duration: str) -> None:
    data = spec_dict()
    data["steps"]["wait"]["wait"] = duration
    with pytest.raises(ValidationError):
        ScenarioSpec.model_validate(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", timedelta(minutes=30)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "7w", "d7", "1.5d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_after_days_needs_days() -> None:
    with pytest.raises(ValidationError, match="days"):
        ScenarioSpec.model_validate(spec_dict(reentry={"mode": "after_days"}))


def test_days_only_with_after_days() -> None:
    with pytest.raises(ValidationError, match="days"):
        ScenarioSpec.model_validate(spec_dict(reentry={"mode": "never", "days": 5}))


def test_after_days_with_days_is_accepted() -> None:
    scenario = compile_scenario(
        ScenarioSpec.model_validate(spec_dict(reentry={"mode": "after_days", "days": 30}))
    )
    assert (scenario.reentry, scenario.reentry_days) == ("after_days", 30)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        ScenarioSpec.model_validate(spec_dict(colour="blue"))


@pytest.mark.parametrize(
    "where",
    ["trigger", "audience", "goal", "route"],
)
def test_cel_syntax_error_raises_value_error_on_compile(where: str) -> None:
    data = spec_dict()
    bad = "event.attributes.amount >"
    if where == "trigger":
        data["trigger"]["when"] = bad
    elif where == "goal":
        data["goal"]["when"] = bad
    elif where == "audience":
        data["audience"] = bad
    else:
        data["steps"]["wait"]["routes"][0]["when"] = bad
    spec = ScenarioSpec.model_validate(data)  # syntax is not checked by the model
    with pytest.raises(ValueError, match="parse"):
        compile_scenario(spec)


def test_first_contact_skips_to_the_first_send() -> None:
    scenario = compile_scenario(ScenarioSpec.model_validate(spec_dict()))
    first = scenario.first_contact()
    assert first is not None
    assert (first.name, first.channel) == ("push", "webpush")


def test_first_contact_follows_wait_otherwise_route() -> None:
    data = spec_dict(start="wait")
    scenario = compile_scenario(ScenarioSpec.model_validate(data))
    first = scenario.first_contact()
    assert first is not None
    assert first.name == "email"


def test_first_contact_can_be_an_escalation() -> None:
    scenario = compile_scenario(ScenarioSpec.model_validate(spec_dict(start="call")))
    first = scenario.first_contact()
    assert first is not None
    assert first.kind == "escalate"
    assert first.channel == "callcentre"


def test_first_contact_none_when_start_is_end() -> None:
    scenario = compile_scenario(ScenarioSpec.model_validate(spec_dict(start="done")))
    assert scenario.first_contact() is None


def test_first_contact_none_on_a_loop_without_sends() -> None:
    data = spec_dict(start="loop")
    data["steps"]["loop"] = {"wait": "1h", "routes": [{"goto": "loop"}]}
    scenario = compile_scenario(ScenarioSpec.model_validate(data))
    assert scenario.first_contact() is None


def test_channels_in_routing_table_order_without_duplicates() -> None:
    data = spec_dict()
    data["steps"]["email2"] = {"send": {"channel": "email", "template": "email_msg"}, "next": "done"}
    scenario = compile_scenario(ScenarioSpec.model_validate(data))
    assert scenario.channels == ("webpush", "email", "callcentre")
