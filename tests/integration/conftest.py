"""Helpers shared by the integration tests: admin headers, row counts, event and profile builders."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, func, select

from omnicrm.bootstrap import Container
from omnicrm.store.tables import (
    audit_log,
    consents,
    customers,
    events,
    identifiers,
    merges,
    products,
    relationships,
    segments,
)

Headers = dict[str, str]
Json = dict[str, Any]
STATE_TABLES: tuple[Table, ...] = (
    customers,
    identifiers,
    segments,
    consents,
    products,
    relationships,
    events,
    merges,
)
_SEQ = itertools.count(1)


@pytest.fixture
def admin(headers_for: Callable[[str], Headers]) -> Headers:
    """Headers of a fresh admin user."""
    return headers_for("admin")


@pytest.fixture
def count(container: Container) -> Callable[[Table], int]:
    """count(table) -> number of rows stored in it right now."""

    def run(table: Table) -> int:
        with container.reader() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    return run


@pytest.fixture
def state_counts(count: Callable[[Table], int]) -> Callable[[], dict[str, int]]:
    """state_counts() -> {table: rows} for every table holding client data."""
    return lambda: {t.name: count(t) for t in STATE_TABLES}


@pytest.fixture
def audit_actions(container: Container) -> Callable[[str], int]:
    """audit_actions(action) -> number of audit entries with that action."""

    def run(action: str) -> int:
        with container.reader() as conn:
            query = select(func.count()).select_from(audit_log).where(audit_log.c.action == action)
            return int(conn.execute(query).scalar_one())

    return run


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_SEQ)}"


@pytest.fixture
def make_event() -> Callable[..., Json]:
    """make_event(type, occurred_at, **fields) -> an event body with sensible defaults per type."""
    defaults: dict[str, Json] = {
        "tariff_page.visited": {"product_class": "card", "page": "/cards"},
        "auth.failed": {"method": "otp"},
        "card.issued": {"contract_number": "CARD-1"},
        "card.activated": {"contract_number": "CARD-1"},
        "crm.call.completed": {"direction": "inbound", "disposition": "resolved"},
        "crm.complaint.registered": {"complaint_id": "CMP-1", "topic": "fees"},
        "crm.complaint.resolved": {"complaint_id": "CMP-1"},
        "crm.branch.visit": {"branch": "kyiv-01"},
        "message.reaction": {"message_id": "M-1", "reaction": "opened"},
        "crm.campaign.targeted": {"campaign_id": "C-1", "scenario_id": "loan_application_reminder"},
    }

    def build(
        type_: str = "tariff_page.visited",
        occurred_at: str = "2026-10-01T10:00:00Z",
        *,
        event_id: str | None = None,
        source: str = "web",
        channel: str | None = None,
        identifiers: dict[str, str] | None = None,
        customer_id: str | None = None,
        attributes: Json | None = None,
    ) -> Json:
        body: Json = {
            "event_id": event_id or unique("ev"),
            "type": type_,
            "occurred_at": occurred_at,
            "source": source,
            "attributes": dict(defaults.get(type_, {})) if attributes is None else attributes,
        }
        if channel is not None:
            body["channel"] = channel
        if identifiers is not None:
            body["identifiers"] = identifiers
        if customer_id is not None:
            body["customer_id"] = customer_id
        if identifiers is None and customer_id is None:
            body["identifiers"] = {"cookie_id": unique("cookie")}
        return body

    return build


@pytest.fixture
def create_customer(client: TestClient, admin: Headers) -> Callable[..., Json]:
    """create_customer(**fields) -> the client file of a newly created profile (asserts 201)."""

    def run(**fields: Any) -> Json:
        body = {"identifiers": [{"kind": "cbs_id", "value": unique("CBS")}], **fields}
        response = client.post("/v1/customers", json=body, headers=admin)
        assert response.status_code == 201, response.text
        result: Json = response.json()
        return result

    return run
