"""The dispatch worker: queued messages from claim to the provider's answer, in one transaction.

    claim up to `batch` messages (rows locked) -> the people's facts now, in bulk
    for each: send_verdict (domain/sending.py)
        withdraw  -> `withdrawn` with the rule's reason (never sent)
        postpone  -> stays `queued`, `available_at` = when quiet hours end
        go        -> render -> channel.send(message, idempotency key)
                        Accepted  -> `sent`, provider and provider id (journalled at once)
                        Transient -> stays `queued`, attempts + 1, retried after back-off with
                                     jitter; `dead` once attempts are exhausted
                        Permanent -> `dead` with the reason (a gone push subscription is deleted)
    -> a `crm.message.status` on the timeline for sent / dead / withdrawn -> commit

The internet-bank inbox and the call-centre queue are omnicrm's own channels: their messages are
delivered (an inbox row, a task) inside the same transaction, so exactly once.

While a message is being sent its row stays locked, so a withdrawal (an opt-out, a goal, a consent
withdrawn: store/dispatch.fence) waits for the batch and no send starts after it commits. A worker
killed mid-batch leaves its messages `queued`; each one a provider had accepted is in the journal
(store/dispatch.Journal, PostgreSQL), so the next worker records it sent without sending it again.
On SQLite (one writer) a batch is one message and its record is in the same transaction. Either way
a kill costs at most one duplicate *attempt* (the message between the provider's answer and its
record), never a lost message.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Transient
from omnicrm.domain.callcentre import QueueBook
from omnicrm.domain.facts import CustomerFacts
from omnicrm.domain.lifecycle import DEAD, QUEUED, SENT, WITHDRAWN
from omnicrm.domain.scenarios import Library, Scenario
from omnicrm.domain.sending import send_verdict
from omnicrm.logs import act
from omnicrm.services.callcentre.tasks import open_task
from omnicrm.services.conversations.facts import load_facts
from omnicrm.services.dispatch.render import Unrenderable, language_of, render
from omnicrm.services.feedback.tokens import tracking
from omnicrm.store import dispatch as store
from omnicrm.store import inbox, push_subscriptions, timeline
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)

STATUS_EVENT = "crm.message.status"
INTERNAL = ("inapp", "callcentre")  # delivered by omnicrm itself, in the dispatch transaction


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    max_attempts: int = 8
    backoff: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=1)
    expiry: timedelta = timedelta(hours=48)
    feedback_key: bytes = b""
    public_url: str = "http://127.0.0.1:8000"
    batch: int = 1  # messages per transaction; more than one needs the journal (PostgreSQL)


@dataclass(frozen=True, slots=True)
class Dispatched:
    """What the worker did with one message (for its status line, logs and tests)."""

    message_id: str  # the idempotency key
    channel: str
    outcome: str  # sent | retry | dead | withdrawn | postponed
    reason: str = ""
    provider: str | None = None


def backoff(attempt: int, config: DispatchConfig, rng: random.Random) -> timedelta:
    """Exponential back-off with full jitter: attempt n waits up to base * 2^(n-1), capped."""
    ceiling = min(config.backoff.total_seconds() * 2 ** (attempt - 1), config.backoff_max.total_seconds())
    return timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


def status_event_id(key: str, status: str) -> str:
    """The timeline event id of a message's status: one per message and status (replays dedup)."""
    return f"status:{hashlib.sha256(key.encode()).hexdigest()[:40]}:{status}"


def _by_customer(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(str(row["customer_id"]), []).append(row)
    return found


@dataclass
class _Batch:
    """What a batch's messages need, read in bulk once the rows are locked."""

    facts: dict[str, CustomerFacts]
    names: dict[str, str]
    addresses: dict[tuple[str, str], str]
    conversations: dict[str, dict[str, Any]]
    devices: dict[str, list[dict[str, Any]]]
    journalled: dict[str, tuple[str, str]]
    records: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)


class Dispatcher:
    """Sends queued messages on the channels it has adapters for (and the internal ones)."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        library: Callable[[], Library],
        channels: Mapping[str, Channel],
        config: DispatchConfig,
        *,
        queues: Callable[[], QueueBook] | None = None,
        journal: store.Journal | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        if config.batch > 1 and journal is None:
            raise ValueError("a batch of several messages needs the sent journal (PostgreSQL)")
        self.uow, self.library, self.channels, self.config = uow, library, dict(channels), config
        self.queues, self.journal, self.clock = queues, journal, clock
        self.rng = rng or random.Random()
        served = set(self.channels) | ({"inapp"} | ({"callcentre"} if queues else set()))
        self.served = sorted(served)

    def step(self) -> list[Dispatched]:
        """Claim, check, send and record up to one batch; an empty list when nothing is due."""
        if self.config.batch > 1 and self.journal is None:
            raise RuntimeError("a batch of several messages is sent only with its journal")
        library = self.library()
        with self.uow() as work:
            conn = work.conn
            now = self.clock()
            rows = store.claim(conn, self.served, now, self.config.batch)
            if not rows:
                return []
            batch = self._read(conn, rows, library, now)
            done = [self._handle(conn, row, batch, library, now) for row in rows]
            store.record(conn, batch.records)
            timeline.insert_events(conn, batch.statuses, received_at=now)
            work.commit()
        for row, did in zip(rows, done, strict=True):
            act(
                log,
                f"dispatch.{did.outcome}",
                idempotency_key=did.message_id,
                customer_id=row["customer_id"],
                channel=did.channel,
                provider=did.provider,
            )
        return done

    def drain(self, limit: int | None = None) -> list[Dispatched]:
        """Handle due messages until none is left (or about `limit`)."""
        done: list[Dispatched] = []
        while limit is None or len(done) < limit:
            step = self.step()
            if not step:
                break
            done.extend(step)
        return done

    def _read(self, conn: Connection, rows: list[dict[str, Any]], library: Library, now: datetime) -> _Batch:
        people = sorted({str(r["customer_id"]) for r in rows})
        pushes = any(r["channel"] == "webpush" for r in rows)
        return _Batch(
            facts=load_facts(conn, people, now=now, policy=library.policy),
            names=store.first_names(conn, people),
            addresses=store.addresses(conn, people),
            conversations=store.conversations_of(conn, [r["instance_id"] for r in rows if r["instance_id"]]),
            devices=_by_customer(push_subscriptions.of_customer(conn, people)) if pushes else {},
            journalled=store.sent_before(conn, [r["idempotency_key"] for r in rows]) if self.journal else {},
        )

    def _handle(
        self, conn: Connection, row: dict[str, Any], batch: _Batch, library: Library, now: datetime
    ) -> Dispatched:
        key, channel = str(row["idempotency_key"]), str(row["channel"])
        attempts = int(row["attempts"] or 0)
        if key in batch.journalled:  # accepted before its worker died: record it, do not resend
            provider, provider_id = batch.journalled[key]
            return self._finish(row, batch, now, SENT, None, provider, provider_id, attempts + 1)
        conversation = batch.conversations.get(row["instance_id"] or "")
        scenario = (
            library.get(conversation["scenario_id"], conversation["scenario_version"])
            if conversation
            else None
        )
        customer = batch.facts.get(row["customer_id"])
        if customer is None or scenario is None:
            why = "the profile was merged or erased" if customer is None else "its scenario is unknown"
            return self._finish(row, batch, now, WITHDRAWN, why)
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
            return self._finish(row, batch, now, WITHDRAWN, verdict.reason)
        if verdict.effect == "postpone" and verdict.until is not None:
            self._keep(row, batch, attempts, verdict.until, verdict.reason, row["status_at"])
            return Dispatched(key, channel, "postponed", verdict.reason)
        if channel == "callcentre":
            result: SendResult = self._open_task(conn, row, now)
        else:
            try:
                message = self._render(row, batch, scenario, library, customer.language)
            except Unrenderable as exc:
                return self._finish(row, batch, now, DEAD, str(exc), attempts=attempts + 1)
            result = self._send(conn, row, message, batch, now)
        attempts += 1
        if isinstance(result, Accepted):
            if self.journal is not None and channel not in INTERNAL:
                self.journal.accepted(key, result.provider, result.provider_id, now)
            return self._finish(row, batch, now, SENT, None, result.provider, result.provider_id, attempts)
        if isinstance(result, Permanent) or attempts >= self.config.max_attempts:
            why = (
                result.reason
                if isinstance(result, Permanent)
                else f"gave up after {attempts} attempts: {result.reason}"
            )
            return self._finish(row, batch, now, DEAD, why, attempts=attempts)
        wait = backoff(attempts, self.config, self.rng)
        if result.retry_after is not None:
            wait = max(wait, timedelta(seconds=result.retry_after))
        reason = f"attempt {attempts} failed: {result.reason}"
        self._keep(row, batch, attempts, now + wait, reason, now)
        return Dispatched(key, channel, "retry", reason)

    def _render(
        self, row: dict[str, Any], batch: _Batch, scenario: Scenario, library: Library, language: str | None
    ) -> Outgoing:
        key, channel = str(row["idempotency_key"]), str(row["channel"])
        spec = library.messages.get(row["template"] or "")
        if spec is None:
            raise Unrenderable(f"message template {row['template']!r} is not in the library")
        conversation = batch.conversations.get(row["instance_id"] or "") or {}
        trigger = conversation.get("trigger_attributes")
        context = {
            **(trigger if isinstance(trigger, dict) else {}),
            "first_name": batch.names.get(row["customer_id"], ""),
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

    def _send(
        self, conn: Connection, row: dict[str, Any], message: Outgoing, batch: _Batch, now: datetime
    ) -> SendResult:
        if message.channel == "inapp":
            inbox.deliver(
                conn,
                message.idempotency_key,
                row["customer_id"],
                message.title,
                message.body,
                message.language,
                now,
            )
            return Accepted("inbox", message.idempotency_key)
        adapter = self.channels[message.channel]
        if message.channel == "webpush":
            return self._push(conn, row, adapter, message, batch)
        to = batch.addresses.get((row["customer_id"], message.channel))
        if to is None:
            what = "e-mail address" if message.channel == "email" else "phone number"
            return Permanent(f"no {what} on the profile")
        return adapter.send(replace(message, to=to))

    def _push(
        self, conn: Connection, row: dict[str, Any], adapter: Channel, message: Outgoing, batch: _Batch
    ) -> SendResult:
        """One push per device the person subscribed; accepted if any device's service took it."""
        devices = batch.devices.get(row["customer_id"], [])
        if not devices:
            return Permanent("no web push subscription on the profile")
        results: list[SendResult] = []
        for device in devices:
            keys = {"p256dh": device["p256dh"], "auth": device["auth"]}
            subscription = orjson.dumps({"endpoint": device["endpoint"], "keys": keys}).decode()
            result = adapter.send(replace(message, to=subscription))
            if isinstance(result, Permanent) and result.gone:
                push_subscriptions.remove(conn, device["id"])
            results.append(result)
        accepted = [r for r in results if isinstance(r, Accepted)]
        if accepted:
            return accepted[0]
        transient = [r for r in results if isinstance(r, Transient)]
        return transient[0] if transient else results[0]

    def _open_task(self, conn: Connection, row: dict[str, Any], now: datetime) -> SendResult:
        assert self.queues is not None  # callcentre is served only with a queue book
        open_task(conn, row, queues=self.queues(), now=now)
        return Accepted("callcentre", str(row["idempotency_key"]))

    def _keep(
        self,
        row: dict[str, Any],
        batch: _Batch,
        attempts: int,
        available_at: datetime,
        reason: str,
        status_at: datetime | None,
    ) -> None:
        """The message stays queued (held, or to be retried) until `available_at`."""
        batch.records.append(
            store.change(
                row,
                status=QUEUED,
                status_reason=reason[:300],
                status_at=status_at,
                attempts=attempts,
                available_at=available_at,
            )
        )

    def _finish(
        self,
        row: dict[str, Any],
        batch: _Batch,
        now: datetime,
        status: str,
        reason: str | None,
        provider: str | None = None,
        provider_id: str | None = None,
        attempts: int | None = None,
    ) -> Dispatched:
        batch.records.append(
            store.change(
                row,
                status=status,
                status_reason=(reason or "")[:300] or None,
                status_at=now,
                attempts=attempts if attempts is not None else row["attempts"],
                provider=provider,
                provider_id=provider_id,
            )
        )
        key = str(row["idempotency_key"])
        attributes: dict[str, Any] = {"message_id": key, "status": status}
        if reason:
            attributes["reason"] = reason[:300]
        if provider:
            attributes["provider"] = provider[:64]
        batch.statuses.append(
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
        )
        outcome = {SENT: "sent", DEAD: "dead", WITHDRAWN: "withdrawn"}[status]
        return Dispatched(key, str(row["channel"]), outcome, reason or "", provider)
