"""A bank's system driving omnicrm over HTTP: clients, events, reactions, and what the engine did.

Used by the tests of the paper's conversation cases (issue 17). Everything goes through the REST API
as a bank's systems would send it; the background decision worker of the app decides. Only the
passing of time is simulated: `expire` moves one conversation's timer into the past, as if its wait
had run out (the worker looks for due timers every 200 ms).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from omnicrm.bootstrap import Container
from omnicrm.store.tables import events, instances, outbox

Headers = dict[str, str]
Json = dict[str, Any]
T = TypeVar("T")
CHANNELS = ("webpush", "email", "sms", "inapp", "callcentre")


def daytime_zone(now: datetime | None = None) -> str:
    """A time zone where it is about noon now: the engine keeps quiet hours in the client's zone, and
    these tests run in real time, at any hour of the day."""
    hour = (now or datetime.now(UTC)).hour
    offset = 12 - hour  # local = UTC + offset; Etc/GMT names carry the sign the other way round
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _source(type_: str) -> str:
    if type_.startswith("crm."):
        return "crm"
    if type_ == "message.reaction":
        return "channel"
    return "core_banking" if type_.startswith(("product.", "deposit.", "payment.")) else "mobile_app"


@dataclass
class Bank:
    client: TestClient
    admin: Headers
    container: Container

    # --- what the bank sends --------------------------------------------------------------------
    def new_client(self, consents: Iterable[str] = CHANNELS, **profile: Any) -> tuple[str, str]:
        """A client with marketing consent on `consents`; returns (customer id, cookie id)."""
        cookie = f"ck-{uuid.uuid4().hex[:10]}"
        profile.setdefault("timezone", daytime_zone())
        body = {
            "status": "client",
            "first_name": "Olena",
            "identifiers": [{"kind": "cookie_id", "value": cookie}],
            "consents": [
                {
                    "channel": c,
                    "purpose": "marketing",
                    "granted": True,
                    "effective_at": "2026-01-01T00:00:00Z",
                }
                for c in consents
            ],
            **profile,
        }
        created = self.client.post("/v1/customers", json=body, headers=self.admin)
        assert created.status_code == 201, created.text
        return str(created.json()["id"]), cookie

    def event(
        self,
        cookie: str,
        type_: str,
        channel: str | None = None,
        ago: timedelta = timedelta(seconds=1),
        **attrs: Any,
    ) -> Json:
        body: Json = {
            "event_id": f"ev-{uuid.uuid4().hex[:12]}",
            "type": type_,
            "occurred_at": stamp(datetime.now(UTC) - ago),
            "source": _source(type_),
            "identifiers": {"cookie_id": cookie},
            "attributes": attrs,
        }
        if channel is not None:
            body["channel"] = channel
        return body

    def post(self, cookie: str, type_: str, channel: str | None = None, **attrs: Any) -> str:
        body = self.event(cookie, type_, channel, **attrs)
        route = "/v1/interactions" if type_.startswith("crm.") else "/v1/events"
        response = self.client.post(route, json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return str(body["event_id"])

    def post_batch(self, bodies: list[Json]) -> None:
        response = self.client.post("/v1/events:batch", json={"items": bodies}, headers=self.admin)
        assert response.status_code == 200, response.text
        assert {i["status"] for i in response.json()["items"]} == {"accepted"}

    def react(self, cookie: str, message: Json, reaction: str) -> str:
        return self.post(
            cookie,
            "message.reaction",
            message["channel"],
            message_id=message["idempotency_key"],
            reaction=reaction,
        )

    # --- what omnicrm did ------------------------------------------------------------------------
    def conversations(self, cid: str) -> Json:
        response = self.client.get(f"/v1/customers/{cid}/conversations", headers=self.admin)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def conversation(self, cid: str, scenario_id: str) -> Json:
        found = [i for i in self.conversations(cid)["instances"] if i["scenario_id"] == scenario_id]
        assert found, f"no {scenario_id} conversation"
        return dict(found[-1])

    def decisions(self, cid: str) -> list[Json]:
        response = self.client.get(f"/v1/customers/{cid}/decisions?limit=500", headers=self.admin)
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def consents(self, cid: str) -> Json:
        """The consent ledger and the current state: {"ledger": [...], "current": [...]}."""
        response = self.client.get(f"/v1/customers/{cid}/consents", headers=self.admin)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def granted(self, cid: str, channel: str, purpose: str = "marketing") -> bool:
        current = self.consents(cid)["current"]
        return bool(next(c["granted"] for c in current if (c["channel"], c["purpose"]) == (channel, purpose)))

    def until(self, probe: Callable[[], T | None], what: str, timeout: float = 8.0) -> T:
        """Poll until `probe` gives something (the decision worker runs behind the API)."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            time.sleep(0.05)

    def at_step(self, cid: str, scenario_id: str, step: str) -> Json:
        def probe() -> Json | None:
            found = [i for i in self.conversations(cid)["instances"] if i["scenario_id"] == scenario_id]
            return found[-1] if found and found[-1]["step"] == step else None

        return self.until(probe, f"{scenario_id} at step {step}")

    def ended(self, cid: str, scenario_id: str) -> Json:
        def probe() -> Json | None:
            found = [i for i in self.conversations(cid)["instances"] if i["scenario_id"] == scenario_id]
            return found[-1] if found and found[-1]["status"] != "active" else None

        return self.until(probe, f"{scenario_id} ended")

    def settled(self, seconds: float = 0.6) -> None:
        """Give the worker time to act on what was just posted (used before asserting that nothing
        more happened; what should happen is awaited with `until`)."""
        time.sleep(seconds)

    def pass_time(self, cid: str, delta: timedelta) -> None:
        """Time passes for this client: everything that happened to them (events, messages queued,
        conversations' starts and timers) moves `delta` into the past, so the caps and waits see
        it as that much older."""
        with self.container.uow() as uow:
            conn = uow.conn
            for table, columns in (
                (events, ("occurred_at",)),
                (outbox, ("created_at", "available_at")),
                (instances, ("started_at", "updated_at", "due_at")),
            ):
                rows = conn.execute(select(table).where(table.c.customer_id == cid)).mappings().all()
                for row in rows:
                    moved = {c: row[c] - delta for c in columns if row[c] is not None}
                    conn.execute(update(table).where(table.c.id == row["id"]).values(moved))
            uow.commit()

    def expire(self, instance_id: str) -> None:
        """Time passes: this conversation's timer has run out."""
        with self.container.uow() as uow:
            uow.conn.execute(
                update(instances)
                .where(instances.c.id == instance_id, instances.c.status == "active")
                .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            uow.commit()
