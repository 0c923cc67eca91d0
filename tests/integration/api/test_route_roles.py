"""Issue 18, point 6: every route lets in exactly the roles the one role table gives it.

The roles of a route are read from the served app (the permission its `Caller` dependency names,
`api/guards.py`) and from `domain/permissions.py`; each route is then called with a token of every
role and with none, and the README's route table must be that same table."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from omnicrm.api.guards import markdown_table, route_guards
from omnicrm.domain.permissions import ROLE_PERMISSIONS, Permission

Headers = dict[str, str]
README = Path(__file__).resolve().parents[3] / "README.md"
_PARAM = re.compile(r"\{[^}]+\}")


def test_every_route_answers_each_role_as_the_role_table_says(
    client: TestClient, headers_for: Callable[[str], Headers]
) -> None:
    tokens = {role: headers_for(role) for role in ROLE_PERMISSIONS}
    wrong: list[str] = []
    for item in route_guards(client.app.routes):  # type: ignore[attr-defined]
        path = _PARAM.sub("1", item.path)
        body = {"json": {}} if item.method in ("POST", "PUT", "PATCH") else {}
        anonymous = client.request(item.method, path, **body).status_code
        if item.guard.signed:  # no token, but a signature: a request without one is refused
            if anonymous not in (401, 404, 422):
                wrong.append(f"{item.method} {item.path} unsigned: {anonymous}")
            continue
        if item.guard.open == (anonymous == 401):
            wrong.append(f"{item.method} {item.path} without a token: {anonymous}")
        for role, headers in tokens.items():
            status = client.request(item.method, path, headers=headers, **body).status_code
            let_in = role in item.guard.roles or item.guard.open
            if (status == 403) == let_in or status == 401:
                wrong.append(f"{item.method} {item.path} as {role}: {status}")
    assert not wrong, "\n".join(wrong)


def test_no_route_that_changes_something_is_guarded_by_a_read_permission(client: TestClient) -> None:
    readers = {p for p in Permission if p.value.endswith(":read")}
    loose = [
        f"{item.method} {item.path} needs only {item.guard.permission}"
        for item in route_guards(client.app.routes)  # type: ignore[attr-defined]
        if item.method not in ("GET", "HEAD") and item.guard.permission in readers
    ]
    assert not loose, "\n".join(loose)


@pytest.mark.parametrize("action", [":cancel", ":dry-run", ":launch", ":submit"])
def test_compliance_checks_campaigns_but_does_not_run_them(
    client: TestClient, headers_for: Callable[[str], Headers], action: str
) -> None:
    marketer = headers_for("marketer")
    body = {
        "name": "Pre-approved loans, spring",
        "scenario_id": "pre-approved-loan-follow-up",
        "segment": '"spring" in customer.segments',
    }
    created = client.post("/v1/campaigns", json=body, headers=marketer)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    response = client.post(
        f"/v1/campaigns/{campaign_id}{action}", json={"reason": "stop it"}, headers=headers_for("compliance")
    )
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/campaigns/{campaign_id}", headers=marketer).json()["status"] == "draft"


def test_the_readme_route_table_is_the_served_one(client: TestClient) -> None:
    text = README.read_text(encoding="utf-8")
    begin, end = "<!-- route-roles:begin (omnicrm roles) -->\n", "<!-- route-roles:end -->"
    assert begin in text, "the README has no generated route table"
    assert end in text, "the README's route table has no end marker"
    documented = text.split(begin, 1)[1].split(end, 1)[0]
    served = markdown_table(client.app.routes)  # type: ignore[attr-defined]
    assert documented == served, "README route table is stale: paste the output of `omnicrm roles`"
