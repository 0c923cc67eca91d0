"""POST /v1/scenarios:simulate and `omnicrm scenarios simulate`: a journey on a simulated clock,
through the live engine, storing and sending nothing (issue 17, point 10)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from journey import Bank, Headers, Json, daytime_zone
from sqlalchemy import Table

from omnicrm.bootstrap import Container
from omnicrm.settings import SHIPPED_SCENARIOS
from omnicrm.store.tables import customers, decisions, events, instances, outbox

LOAN = "loan-application-reminder"
RENEWAL = "deposit-renewal"
MARKETING = [
    {"channel": c, "purpose": "marketing", "granted": True, "effective_at": "2026-01-01T00:00:00Z"}
    for c in ("webpush", "email", "sms", "inapp", "callcentre")
]
ABANDONED: Json = {
    "type": "application.abandoned",
    "attributes": {"product_class": "consumer_loan", "application_id": "A-1", "last_step": "documents"},
}
MATURING: Json = {
    "type": "deposit.maturing",
    "attributes": {"contract_number": "DEP-1", "maturity_date": "2026-12-30"},
}


def journey(*items: Json, start: str = "2026-12-01T08:00:00Z", days: int = 10, **client: Any) -> Json:
    return {
        "start": start,
        "days": days,
        "client": {"timezone": "Europe/Kyiv", "consents": MARKETING, **client},
        "events": [{"at": "0h", **ABANDONED}] if not items else list(items),
    }


@pytest.fixture
def simulate(client: TestClient, headers_for: Callable[[str], Headers]) -> Callable[..., Json]:
    marketer = headers_for("marketer")

    def run(body: Json, expect: int = 200) -> Json:
        response = client.post("/v1/scenarios:simulate", json=body, headers=marketer)
        assert response.status_code == expect, response.text
        return dict(response.json())

    return run


def _lines(trace: Json, *kinds: str) -> list[tuple[str, str | None, str | None, str | None]]:
    return [(s["kind"], s["scenario"], s["step"], s["channel"]) for s in trace["trace"] if s["kind"] in kinds]


def _hours(trace: Json, kind: str, step: str, scenario: str = LOAN) -> float:
    """Hours from the start to the first `kind` line of this scenario's `step`."""
    start = trace["start"]
    lines = trace["trace"]
    at = next(s["at"] for s in lines if (s["kind"], s["step"], s["scenario"]) == (kind, step, scenario))
    return (datetime.fromisoformat(at) - datetime.fromisoformat(start)).total_seconds() / 3600


# ---------------------------------------------------------------- what it answers


def test_the_loan_example_runs_on_the_shipped_24h_and_48h_timings(simulate: Callable[..., Json]) -> None:
    trace = simulate({"journey": journey()})

    assert _lines(trace, "send", "task", "end") == [
        ("send", LOAN, "push", "webpush"),
        ("send", LOAN, "email", "email"),
        ("task", LOAN, "call", "callcentre"),
        ("end", LOAN, "done", None),
    ]
    assert _hours(trace, "send", "email") == 24
    assert _hours(trace, "task", "call") == 72
    assert trace["stored"] is False
    decision = next(s for s in trace["trace"] if s["kind"] == "decision")
    assert decision["detail"].startswith("contact now via webpush")


def test_a_click_ends_the_journey_and_a_reaction_names_its_message(simulate: Callable[..., Json]) -> None:
    body = journey(
        {"at": "0h", **ABANDONED},
        {"at": "2h", "reaction": "clicked", "to": {"scenario": LOAN, "step": "push"}},
    )
    trace = simulate({"journey": body})

    assert _lines(trace, "send", "task") == [("send", LOAN, "push", "webpush")]
    reaction = next(s for s in trace["trace"] if s["kind"] == "reaction")
    assert (reaction["step"], reaction["channel"]) == ("push", "webpush")
    end = next(s for s in trace["trace"] if s["kind"] == "end")
    assert end["detail"] == "completed: finished"


def test_quiet_hours_are_kept_in_the_clients_zone(simulate: Callable[..., Json]) -> None:
    # 20:30 UTC is 22:30 in Kyiv (quiet until 09:00) but 20:30 in London (quiet from 21:00)
    kyiv = simulate({"journey": journey(start="2026-12-01T20:30:00Z")})
    london = simulate({"journey": journey(start="2026-12-01T20:30:00Z", timezone="Europe/London")})

    first = next(s for s in kyiv["trace"] if s["kind"] == "decision")
    assert first["rule"] == "quiet_hours"
    assert "contact later via webpush at 2026-12-02 07:00 UTC" in first["detail"]
    assert _hours(kyiv, "send", "push") == 10.5  # 09:00 Kyiv
    assert _hours(london, "send", "push") == 0


def test_a_follow_up_held_by_the_cap_shows_its_rule_and_reason(simulate: Callable[..., Json]) -> None:
    # two contacts a day at most: the loan push and the renewal e-mail take them; a reaction to the
    # push then brings up the loan e-mail, which waits until the push is a day old
    body = journey(
        {"at": "0h", **ABANDONED},
        {"at": "1h", **MATURING},
        {"at": "2h", "reaction": "opened", "to": {"scenario": LOAN, "step": "push"}},
    )
    trace = simulate({"journey": body})

    held = [s for s in trace["trace"] if s["kind"] == "hold"]
    assert held, trace["trace"]
    assert (held[0]["scenario"], held[0]["step"], held[0]["rule"]) == (LOAN, "email", "frequency_cap")
    assert "contact limit reached" in held[0]["detail"]
    assert _hours(trace, "hold", "email") == 2
    assert _hours(trace, "send", "email") == 24  # when the push no longer counts


def test_a_complaint_cancels_the_commercial_journey_at_its_next_step(simulate: Callable[..., Json]) -> None:
    body = journey(
        {"at": "0h", **ABANDONED},
        {
            "at": "3h",
            "type": "crm.complaint.registered",
            "attributes": {"complaint_id": "C-1", "topic": "fees"},
        },
    )
    trace = simulate({"journey": body})

    cancel = next(s for s in trace["trace"] if s["kind"] == "cancel")
    assert (cancel["scenario"], cancel["step"], cancel["rule"]) == (LOAN, "email", "open_complaint")
    assert _hours(trace, "cancel", "email") == 24
    assert ("send", LOAN, "email", "email") not in _lines(trace, "send")


def test_an_unpublished_scenario_can_be_simulated_alone(simulate: Callable[..., Json]) -> None:
    spec = yaml.safe_load((SHIPPED_SCENARIOS / "templates" / f"{LOAN}.yaml").read_text(encoding="utf-8"))
    draft = copy.deepcopy(spec)
    draft.update(id="loan-draft", version=1)
    draft["steps"]["wait_push"]["wait"] = "2h"
    trace = simulate({"journey": journey(), "scenario": draft, "only": "loan-draft"})

    assert [s for s in trace["trace"] if s["scenario"] not in (None, "loan-draft")] == []
    assert _hours(trace, "send", "email", "loan-draft") == 2


# ---------------------------------------------------------------- the same answer as the live worker


def _live_sequence(
    bank: Bank, cid: str, scenario_id: str, waits: list[str]
) -> list[tuple[str, str, str, str | None]]:
    for wait in waits:  # the wait runs out: the client's history becomes that much older
        waiting = bank.at_step(cid, scenario_id, wait)
        bank.pass_time(
            cid, datetime.fromisoformat(waiting["due_at"]) - datetime.now(UTC) + timedelta(seconds=1)
        )
    ended = bank.ended(cid, scenario_id)
    sent = [
        ("send" if m["kind"] == "message" else "task", scenario_id, m["payload"]["step"], m["channel"])
        for m in ended["messages"]
    ]
    return [*sent, ("end", scenario_id, ended["step"], None)]


@pytest.mark.parametrize(
    ("scenario_id", "trigger", "profile", "waits"),
    [
        (LOAN, ABANDONED, {}, ["wait_push", "wait_email"]),
        (
            RENEWAL,
            MATURING,
            {"value_tier": "premium", "segments": ["assisted-sales-positive"]},
            ["wait_email", "wait_sms"],
        ),
    ],
    ids=["loan: push, e-mail, call", "renewal: e-mail, SMS, personal call"],
)
def test_the_simulator_gives_the_live_workers_answer_for_the_papers_examples(
    client: TestClient,
    admin: Headers,
    container: Container,
    simulate: Callable[..., Json],
    scenario_id: str,
    trigger: Json,
    profile: Json,
    waits: list[str],
) -> None:
    zone = daytime_zone()
    bank = Bank(client, admin, container)
    cid, cookie = bank.new_client(timezone=zone, **profile)
    bank.post(cookie, trigger["type"], **trigger["attributes"])
    live = _live_sequence(bank, cid, scenario_id, waits)

    # the same client and trigger, at the same local time of day, on the simulated clock
    start = datetime.now(UTC).replace(microsecond=0).isoformat()
    trace = simulate(
        {"journey": journey({"at": "0h", **trigger}, start=start, days=14, timezone=zone, **profile)}
    )
    simulated = [line for line in _lines(trace, "send", "task", "end") if line[1] == scenario_id]

    assert simulated == live
    assert len(live) == 4  # three contacts and the end: both examples run to their last step


# ---------------------------------------------------------------- it stores and sends nothing; bad input


def test_a_simulation_writes_nothing_to_the_banks_database(
    simulate: Callable[..., Json], count: Callable[[Table], int]
) -> None:
    before = {t.name: count(t) for t in (customers, events, decisions, instances, outbox)}
    simulate({"journey": journey()})
    assert {t.name: count(t) for t in (customers, events, decisions, instances, outbox)} == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"journey": {"start": "2026-12-01T08:00:00"}}, "journey.start"),  # no time zone
        ({"journey": journey({"at": "30d", **ABANDONED})}, "journey"),  # beyond the period
        ({"journey": journey({"at": "0h", "type": "no.such.event"})}, "type"),
        ({"journey": journey({"at": "1h", "reaction": "clicked"})}, "events"),  # nothing to react to
        ({"journey": journey(), "only": "no-such-scenario"}, "only"),
        ({"journey": journey(), "scenario": {"id": "x"}}, "scenario"),
    ],
    ids=[
        "naive start",
        "outside the period",
        "unknown event",
        "reaction to nothing",
        "unknown only",
        "bad template",
    ],
)
def test_a_bad_journey_is_refused_with_problem_json(
    simulate: Callable[..., Json], body: Json, field: str
) -> None:
    problem = simulate(body, expect=422)
    assert problem["status"] == 422
    assert any(field in e["field"] for e in problem["errors"]), problem


def test_only_marketers_and_admins_simulate(
    client: TestClient, headers_for: Callable[[str], Headers]
) -> None:
    body = {"journey": journey()}
    assert client.post("/v1/scenarios:simulate", json=body).status_code == 401
    for role, status in (("operator", 403), ("compliance", 403), ("marketer", 200), ("admin", 200)):
        assert (
            client.post("/v1/scenarios:simulate", json=body, headers=headers_for(role)).status_code == status
        )


def test_scarce_slots_go_by_priority_not_by_arrival(simulate: Callable[..., Json]) -> None:
    overdue = {"type": "payment.overdue", "attributes": {"contract_number": "LN-1", "days_overdue": 3}}
    trace = simulate(
        {"journey": journey({"at": "0h", **ABANDONED}, {"at": "0h", **MATURING}, {"at": "0h", **overdue})}
    )

    at_start = [s for s in trace["trace"] if s["at"] == trace["start"]]
    assert ("withdrawn", LOAN, "push", "webpush") in _lines({"trace": at_start}, "withdrawn")
    assert ("send", "payment-overdue-reminder", "sms", "sms") in _lines({"trace": at_start}, "send")
    assert ("send", RENEWAL, "email", "email") in _lines({"trace": at_start}, "send")
    gave_up = next(s for s in at_start if s["kind"] == "hold" and s["scenario"] == LOAN)
    assert gave_up["rule"] == "priority"
    # the commercial push is queued again when a slot frees, a day later
    pushes = [
        s["at"] for s in trace["trace"] if (s["kind"], s["scenario"], s["step"]) == ("send", LOAN, "push")
    ]
    assert pushes == [trace["start"], "2026-12-02T08:00:00Z"]
