"""`GET /metrics`: who may scrape it, and figures that follow what really happens in the database
(events posted and decided, timers, outbox rows in every status, webhook intake), on both backends."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container
from omnicrm.cli.status import figures_of, render
from omnicrm.services.conversations import decider
from omnicrm.store.tables import feedback_inbox, instances, outbox

Headers = dict[str, str]
Json = dict[str, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_KEYS = itertools.count(1)


@pytest.fixture
def quiet(container: Container) -> Iterator[TestClient]:
    """The API without its in-process decision worker, so the test decides when events are decided."""
    settings = container.settings.model_copy(update={"decide_in_process": False})
    with TestClient(create_app(dataclasses.replace(container, settings=settings))) as test_client:
        yield test_client


@pytest.fixture
def create_customer(quiet: TestClient, admin: Headers) -> Callable[..., Json]:
    """Profiles made through the quiet app. The shared fixture's app (`client`) runs a decision
    worker, which ended this module's due timers while a test was counting them (a CI flake)."""

    def run(**fields: Any) -> Json:
        body = {"identifiers": [{"kind": "cbs_id", "value": f"CBS-M{next(_KEYS)}"}], **fields}
        response = quiet.post("/v1/customers", json=body, headers=admin)
        assert response.status_code == 201, response.text
        result: Json = response.json()
        return result

    return run


@pytest.fixture
def monitoring(headers_for: Callable[[str], Headers]) -> Headers:
    return headers_for("monitoring")


def scrape(client: TestClient, headers: Headers) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_answer_only_a_role_holding_metrics_read(
    quiet: TestClient, headers_for: Callable[[str], Headers], monitoring: Headers
) -> None:
    assert quiet.get("/metrics").status_code == 401
    assert quiet.get("/metrics", headers={"Authorization": "Bearer ocrm_not-a-token"}).status_code == 401
    for role in ("operator", "marketer", "compliance", "auditor", "integration"):
        refused = quiet.get("/metrics", headers=headers_for(role))
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == "application/problem+json"
    for headers in (monitoring, headers_for("admin")):
        response = quiet.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert {"omnicrm_decision_lag_events", "omnicrm_timers_due", "omnicrm_outbox_messages"} <= names


def test_decision_lag_follows_posted_and_decided_events(
    quiet: TestClient,
    container: Container,
    admin: Headers,
    monitoring: Headers,
    make_event: Callable[..., Json],
) -> None:
    for _ in range(2):
        assert quiet.post("/v1/events", json=make_event(), headers=admin).status_code in (200, 201, 202)
    assert value(scrape(quiet, monitoring), "omnicrm_decision_lag_events") >= 2  # type: ignore[operator]
    decider.drain(container.uow, container.library)
    decided = scrape(quiet, monitoring)
    assert value(decided, "omnicrm_decision_lag_events") == 0
    assert value(decided, "omnicrm_decision_lag_seconds") == 0

    for _ in range(3):
        assert quiet.post("/v1/events", json=make_event(), headers=admin).status_code in (200, 201, 202)
    behind = scrape(quiet, monitoring)
    assert value(behind, "omnicrm_decision_lag_events") == 3
    assert 0 < value(behind, "omnicrm_decision_lag_seconds") < 600  # type: ignore[operator]

    decider.drain(container.uow, container.library)
    caught_up = scrape(quiet, monitoring)
    assert value(caught_up, "omnicrm_decision_lag_events") == 0
    assert value(caught_up, "omnicrm_decision_lag_seconds") == 0


def _instance(customer_id: str, *, status: str, due_at: datetime | None) -> Json:
    at = datetime.now(UTC)
    return {
        "id": f"inst-{next(_KEYS)}",
        "customer_id": customer_id,
        "scenario_id": f"scenario-{next(_KEYS)}",
        "scenario_version": 1,
        "purpose": "service",
        "status": status,
        "step": "wait",
        "due_at": due_at,
        "trigger_event_id": f"ev-{next(_KEYS)}",
        "started_at": at,
        "updated_at": at,
    }


def test_due_timers_count_active_waits_that_timed_out(
    quiet: TestClient, container: Container, create_customer: Callable[..., Json], monitoring: Headers
) -> None:
    before = scrape(quiet, monitoring)
    assert value(before, "omnicrm_timers_due") == 0
    assert value(before, "omnicrm_timers_waiting") == 0
    customer_id = create_customer()["id"]
    now = datetime.now(UTC)
    rows = [
        _instance(customer_id, status="active", due_at=now - timedelta(hours=2)),
        _instance(customer_id, status="active", due_at=now - timedelta(minutes=1)),
        _instance(customer_id, status="active", due_at=now + timedelta(hours=24)),
        _instance(customer_id, status="active", due_at=None),
        _instance(customer_id, status="completed", due_at=now - timedelta(hours=1)),
    ]
    with container.uow() as uow:
        uow.conn.execute(insert(instances), rows)
        uow.commit()
    after = scrape(quiet, monitoring)
    assert value(after, "omnicrm_timers_due") == 2
    assert value(after, "omnicrm_timers_waiting") == 3

    with container.uow() as uow:  # the first conversation ends: its timer no longer counts
        uow.conn.execute(update(instances).where(instances.c.id == rows[0]["id"]).values(status="completed"))
        uow.commit()
    ended = scrape(quiet, monitoring)
    assert value(ended, "omnicrm_timers_due") == 1
    assert value(ended, "omnicrm_timers_waiting") == 2


def _message(customer_id: str, channel: str, status: str, provider: str | None, attempts: int) -> Json:
    at = datetime.now(UTC)
    return {
        "idempotency_key": f"key-{next(_KEYS)}",
        "customer_id": customer_id,
        "kind": "message",
        "channel": channel,
        "purpose": "service",
        "payload": {},
        "status": status,
        "available_at": at,
        "created_at": at,
        "attempts": attempts,
        "provider": provider,
    }


def test_outbox_backlog_sends_failures_and_retries_per_channel_and_provider(
    quiet: TestClient, container: Container, create_customer: Callable[..., Json], monitoring: Headers
) -> None:
    customer_id = create_customer()["id"]
    rows = [
        _message(customer_id, "email", "queued", None, 0),
        _message(customer_id, "email", "queued", None, 0),
        _message(customer_id, "email", "sent", "smtp-a", 1),
        _message(customer_id, "email", "sent", "smtp-a", 3),
        _message(customer_id, "email", "dead", "smtp-a", 5),
        _message(customer_id, "sms", "failed", "kannel", 2),
        _message(customer_id, "sms", "delivered", "kannel", 1),
    ]
    with container.uow() as uow:
        uow.conn.execute(insert(outbox), rows)
        uow.commit()
    samples = scrape(quiet, monitoring)
    backlog = "omnicrm_outbox_messages"
    assert value(samples, backlog, channel="email", status="queued") == 2
    assert value(samples, backlog, channel="email", status="sent") == 2
    assert value(samples, backlog, channel="email", status="dead") == 1
    assert value(samples, backlog, channel="sms", status="failed") == 1
    assert value(samples, backlog, channel="sms", status="delivered") == 1
    assert value(samples, backlog, channel="sms", status="queued") is None
    by_provider = "omnicrm_provider_messages"
    assert value(samples, by_provider, provider="smtp-a", status="sent") == 2
    assert value(samples, by_provider, provider="smtp-a", status="dead") == 1
    assert value(samples, by_provider, provider="kannel", status="failed") == 1
    assert value(samples, by_provider, provider="kannel", status="delivered") == 1
    assert value(samples, by_provider, provider="unassigned", status="queued") == 2
    assert value(samples, "omnicrm_provider_retries_total", provider="smtp-a") == 2 + 4
    assert value(samples, "omnicrm_provider_retries_total", provider="kannel") == 1

    # A queued e-mail goes out through a second provider after one retry.
    with container.uow() as uow:
        uow.conn.execute(
            update(outbox)
            .where(outbox.c.idempotency_key == rows[0]["idempotency_key"])
            .values(status="sent", provider="smtp-b", attempts=2)
        )
        uow.commit()
    moved = scrape(quiet, monitoring)
    assert value(moved, backlog, channel="email", status="queued") == 1
    assert value(moved, backlog, channel="email", status="sent") == 3
    assert value(moved, by_provider, provider="smtp-b", status="sent") == 1
    assert value(moved, "omnicrm_provider_retries_total", provider="smtp-b") == 1

    # The worker's status line reads the same figures.
    line = render(figures_of(container)(), previous=None, elapsed_s=0, uptime_s=5)
    assert "outbox queued 1 sent 4 failed 1 dead 1" in line


def test_webhook_intake_counts_feedback_per_source(
    quiet: TestClient, container: Container, monitoring: Headers
) -> None:
    assert not any(name == "omnicrm_webhooks_received_total" for name, _ in scrape(quiet, monitoring))
    at = datetime.now(UTC)
    received = [("kannel", "dlr-1"), ("kannel", "dlr-2"), ("kannel", "dlr-3"), ("tracking", "open-1")]
    with container.uow() as uow:
        uow.conn.execute(
            insert(feedback_inbox),
            [{"source": s, "event_id": e, "status": "delivered", "received_at": at} for s, e in received],
        )
        uow.commit()
    samples = scrape(quiet, monitoring)
    assert value(samples, "omnicrm_webhooks_received_total", source="kannel") == 3
    assert value(samples, "omnicrm_webhooks_received_total", source="tracking") == 1


def test_the_process_counts_its_answers_by_status_class(quiet: TestClient, monitoring: Headers) -> None:
    first = scrape(quiet, monitoring)
    refused = [sample for (name, labels), sample in first.items() if ("code", "4xx") in labels]
    assert len(refused) == 1
    for _ in range(3):
        assert quiet.get("/metrics").status_code == 401
    second = scrape(quiet, monitoring)
    again = [sample for (name, labels), sample in second.items() if ("code", "4xx") in labels]
    assert again[0] == refused[0] + 3
    answered = [sample for (name, labels), sample in second.items() if ("code", "2xx") in labels]
    assert answered[0] >= 1  # the first scrape
