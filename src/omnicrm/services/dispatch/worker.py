"""The dispatch worker: one queued message per transaction, from claim to the provider's answer.

    claim (row locked) -> the person's facts now -> send_verdict (domain/sending.py)
        withdraw  -> `withdrawn` with the rule's reason (never sent)
        postpone  -> stays `queued`, `available_at` = when quiet hours end
        go        -> render -> channel.send(message, idempotency key)
                        Accepted  -> `sent`, provider and provider id
                        Transient -> stays `queued`, attempts + 1, retried after back-off with jitter;
                                     `dead` once attempts are exhausted
                        Permanent -> `dead` with the reason (a gone push subscription is deleted)
    -> a `crm.message.status` on the timeline for sent / dead / withdrawn -> commit

The send happens inside the transaction that records it. A worker killed after the provider
accepted but before the commit leaves the message `queued`; the next worker sends it again with the
same idempotency key, which the provider (or the receiving server) uses to keep one effect. So each
kill can cost at most one duplicate *attempt*, never a lost message.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Transient
from omnicrm.domain.lifecycle import DEAD, QUEUED, SENT, WITHDRAWN
from omnicrm.domain.scenarios import Library, Scenario
from omnicrm.domain.sending import send_verdict
from omnicrm.logs import act
from omnicrm.services.dispatch.render import Unrenderable, language_of, render
from omnicrm.services.facts import load_facts
from omnicrm.services.feedback.tokens import tracking
from omnicrm.store import dispatch as store
from omnicrm.store import timeline
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)

STATUS_EVENT = "crm.message.status"


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    max_attempts: int = 8
    backoff: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=1)
    expiry: timedelta = timedelta(hours=48)
    feedback_key: bytes = b""
    public_url: str = "http://127.0.0.1:8000"


@dataclass(frozen=True, slots=True)
class Dispatched:
    """What one step of the worker did (for its status line, logs and tests)."""

    message_id: str  # the idempotency key
    channel: str
    outcome: str  # sent | retry | dead | withdrawn | postponed
    reason: str = ""
    provider: str | None = None


def backoff(attempt: int, config: DispatchConfig, rng: random.Random) -> timedelta:
    """Exponential back-off with full jitter: attempt n waits up to base * 2^(n-1), capped."""
    ceiling = min(config.backoff.total_seconds() * 2 ** (attempt - 1), config.backoff_max.total_seconds())
    return timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


class Dispatcher:
    """Sends queued messages on the channels it has adapters for; `step()` handles one."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        library: Callable[[], Library],
        channels: Mapping[str, Channel],
        config: DispatchConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.uow, self.library, self.channels, self.config = uow, library, dict(channels), config
        self.clock = clock
        self.rng = rng or random.Random()

    def step(self) -> Dispatched | None:
        """Claim, check, send and record one message; None when nothing is due."""
        library = self.library()
        with self.uow() as work:
            now = self.clock()
            row = store.claim(work.conn, self.channels, now)
            if row is None:
                return None
            done = self._handle(work.conn, row, library, now)
            work.commit()
        act(
            log,
            f"dispatch.{done.outcome}",
            idempotency_key=done.message_id,
            customer_id=row["customer_id"],
            channel=done.channel,
            provider=done.provider,
            attempts=int(row["attempts"] or 0) + (done.outcome in ("sent", "retry", "dead")),
        )
        return done

    def drain(self, limit: int | None = None) -> list[Dispatched]:
        """Handle due messages until none is left (or `limit`)."""
        done: list[Dispatched] = []
        while limit is None or len(done) < limit:
            step = self.step()
            if step is None:
                break
            done.append(step)
        return done

    def _handle(self, conn: Connection, row: dict[str, Any], library: Library, now: datetime) -> Dispatched:
        key, channel = str(row["idempotency_key"]), str(row["channel"])
        instance = store.instance_of(conn, row["instance_id"])
        scenario = library.get(instance["scenario_id"], instance["scenario_version"]) if instance else None
        facts = load_facts(conn, [row["customer_id"]], now=now, policy=library.policy)
        customer = facts.get(row["customer_id"])
        if customer is None or scenario is None:
            why = "the profile was merged or erased" if customer is None else "its scenario is unknown"
            return self._finish(conn, row, now, WITHDRAWN, why)
        verdict = send_verdict(
            scenario,
            customer,
            channel=channel,
            queued_at=row["created_at"],
            now=now,
            policy=library.policy,
            expiry=self.config.expiry,
        )
        if verdict.effect == "withdraw":
            return self._finish(conn, row, now, WITHDRAWN, verdict.reason)
        if verdict.effect == "postpone" and verdict.until is not None:
            store.record(conn, row["id"], available_at=verdict.until, status_reason=verdict.reason[:300])
            return Dispatched(key, channel, "postponed", verdict.reason)
        try:
            message = self._render(conn, row, scenario, library, customer.language)
        except Unrenderable as exc:
            return self._finish(conn, row, now, DEAD, str(exc))
        result = self._send(conn, row, message)
        attempts = int(row["attempts"] or 0) + 1
        if isinstance(result, Accepted):
            return self._finish(
                conn,
                row,
                now,
                SENT,
                None,
                provider=result.provider,
                provider_id=result.provider_id,
                attempts=attempts,
            )
        if isinstance(result, Permanent) or attempts >= self.config.max_attempts:
            why = (
                result.reason
                if isinstance(result, Permanent)
                else f"gave up after {attempts} attempts: {result.reason}"
            )
            return self._finish(conn, row, now, DEAD, why, attempts=attempts)
        wait = backoff(attempts, self.config, self.rng)
        if result.retry_after is not None:
            wait = max(wait, timedelta(seconds=result.retry_after))
        reason = f"attempt {attempts} failed: {result.reason}"[:300]
        store.record(
            conn, row["id"], attempts=attempts, available_at=now + wait, status_reason=reason, status_at=now
        )
        return Dispatched(key, channel, "retry", reason)

    def _render(
        self,
        conn: Connection,
        row: dict[str, Any],
        scenario: Scenario,
        library: Library,
        language: str | None,
    ) -> Outgoing:
        key, channel = str(row["idempotency_key"]), str(row["channel"])
        spec = library.messages.get(row["template"] or "")
        if spec is None:
            raise Unrenderable(f"message template {row['template']!r} is not in the library")
        person = store.person(conn, row["customer_id"]) or {}
        context = {
            **store.trigger_attributes(conn, row["instance_id"]),
            "first_name": person.get("first_name") or "",
        }
        parts = render(spec, language_of(language), context)
        return Outgoing(
            idempotency_key=key,
            channel=channel,
            to="",
            language=language_of(language),
            body=parts["body"],
            subject=parts.get("subject"),
            title=parts.get("title"),
            purpose=scenario.purpose,
            template=row["template"],
            tracking=tracking(key, self.config.feedback_key, self.config.public_url),
        )

    def _send(self, conn: Connection, row: dict[str, Any], message: Outgoing) -> SendResult:
        adapter = self.channels[message.channel]
        if message.channel == "webpush":
            return self._push(conn, row, adapter, message)
        to = store.address(conn, row["customer_id"], message.channel)
        if message.channel in ("email", "sms") and to is None:
            return Permanent(
                f"no {'e-mail address' if message.channel == 'email' else 'phone number'} on the profile"
            )
        return adapter.send(_addressed(message, to or str(row["customer_id"])))

    def _push(self, conn: Connection, row: dict[str, Any], adapter: Channel, message: Outgoing) -> SendResult:
        """One push per device the person subscribed; accepted if any device's service took it."""
        devices = store.subscriptions(conn, row["customer_id"])
        if not devices:
            return Permanent("no web push subscription on the profile")
        results: list[SendResult] = []
        for device in devices:
            subscription = {
                "endpoint": device["endpoint"],
                "keys": {"p256dh": device["p256dh"], "auth": device["auth"]},
            }
            result = adapter.send(_addressed(message, orjson.dumps(subscription).decode()))
            if isinstance(result, Permanent) and result.gone:
                store.forget_subscription(conn, device["id"])
            results.append(result)
        accepted = [r for r in results if isinstance(r, Accepted)]
        if accepted:
            return accepted[0]
        transient = [r for r in results if isinstance(r, Transient)]
        return transient[0] if transient else results[0]

    def _finish(
        self,
        conn: Connection,
        row: dict[str, Any],
        now: datetime,
        status: str,
        reason: str | None,
        *,
        provider: str | None = None,
        provider_id: str | None = None,
        attempts: int | None = None,
    ) -> Dispatched:
        values: dict[str, Any] = {
            "status": status,
            "status_reason": (reason or "")[:300] or None,
            "status_at": now,
        }
        if provider is not None:
            values.update(provider=provider, provider_id=provider_id)
        if attempts is not None:
            values["attempts"] = attempts
        store.record(conn, row["id"], **values)
        key = str(row["idempotency_key"])
        attributes: dict[str, Any] = {"message_id": key, "status": status}
        if reason:
            attributes["reason"] = reason[:300]
        if provider:
            attributes["provider"] = provider[:64]
        timeline.insert_events(
            conn,
            [
                {
                    "event_id": status_event_id(key, status),
                    "customer_id": row["customer_id"],
                    "origin_id": row["customer_id"],
                    "kind": "interaction",
                    "type": STATUS_EVENT,
                    "source": "channel",
                    "channel": row["channel"],
                    "occurred_at": now,
                    "attributes": attributes,
                }
            ],
            received_at=now,
        )
        outcome = {SENT: "sent", DEAD: "dead", WITHDRAWN: "withdrawn"}[status]
        return Dispatched(key, str(row["channel"]), outcome, reason or "", provider)


def _addressed(message: Outgoing, to: str) -> Outgoing:
    return replace(message, to=to)


def status_event_id(key: str, status: str) -> str:
    """The timeline event id of a message's status: one per message and status (replays dedup)."""
    return f"status:{hashlib.sha256(key.encode()).hexdigest()[:40]}:{status}"


__all__ = ["QUEUED", "DispatchConfig", "Dispatched", "Dispatcher", "backoff"]
