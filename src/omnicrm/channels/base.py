"""The channel contract: an `Outgoing` message in, a typed `SendResult` out.

    Accepted(provider, provider_id)  the provider took it; feedback will refer to provider_id
    Transient(reason, retry_after)   try again later (throttled, timed out, connection refused)
    Permanent(reason, gone)          never retry (bad address, refused content); `gone`: the address
                                     itself is dead (a push subscription answered 404/410)

Vendor limits are class data (`max_body`, `max_title`, `rate_per_second`) that `Channel.send`
enforces before the adapter's `_send` runs, so no adapter repeats them (apprise's idea, with a typed
result instead of its bare bool). An adapter that raises `OSError` (refused, reset, timed out) gets a
`Transient` result; any other exception is a defect and propagates.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Tracking:
    """Where a client's open, click and unsubscribe go back to omnicrm (signed per message)."""

    open_url: str  # a 1x1 pixel
    click_url: str  # the link's target is appended, URL-quoted, as `?u=`
    unsubscribe_url: str  # GET shows a page, POST (RFC 8058 one-click) unsubscribes


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message for one recipient. `idempotency_key` is the outbox key: every adapter
    hands it to its provider (a header, a client reference) so a retried send has one effect."""

    idempotency_key: str
    channel: str  # email | sms | webpush | inapp | callcentre
    to: str  # e-mail address, MSISDN (+380...), push subscription JSON, customer id (inapp)
    language: str  # uk | en
    body: str
    subject: str | None = None
    title: str | None = None
    purpose: str = "service"
    template: str | None = None
    tracking: Tracking | None = None
    extra: Mapping[str, str] = field(default_factory=dict)  # adapter-specific (e.g. push TTL)


@dataclass(frozen=True, slots=True)
class Accepted:
    provider: str
    provider_id: str
    detail: Mapping[str, str | int] = field(default_factory=dict)  # e.g. {"segments": 2}


@dataclass(frozen=True, slots=True)
class Transient:
    reason: str
    retry_after: float | None = None  # seconds, when the provider says


@dataclass(frozen=True, slots=True)
class Permanent:
    reason: str
    gone: bool = False


SendResult = Accepted | Transient | Permanent


class RateLimit:
    """A token bucket shared by the threads of one process: `take()` waits for the next token."""

    def __init__(self, per_second: float, burst: int | None = None) -> None:
        if per_second <= 0:
            raise ValueError("a rate limit must be positive")
        self.per_second = per_second
        self.capacity = float(burst if burst is not None else max(1, round(per_second)))
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds waited."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)
        return wait


class Channel(abc.ABC):
    """One provider of one channel. Subclasses set `channel` and the vendor's limits, and implement
    `_send`; `provider` names this configured instance (two SMS gateways are two providers)."""

    channel: ClassVar[str]
    max_body: ClassVar[int | None] = None
    max_title: ClassVar[int | None] = None
    max_subject: ClassVar[int | None] = None
    rate_per_second: ClassVar[float | None] = None

    def __init__(self, provider: str, *, rate_per_second: float | None = None) -> None:
        self.provider = provider
        rate = rate_per_second if rate_per_second is not None else self.rate_per_second
        self._limit = RateLimit(rate) if rate else None

    def send(self, message: Outgoing) -> SendResult:
        refused = self._refuse(message)
        if refused:
            return Permanent(refused)
        if self._limit is not None:
            self._limit.take()
        try:
            return self._send(message)
        except OSError as exc:  # refused, reset, timed out: the provider may answer later
            return Transient(f"{self.provider}: {type(exc).__name__}: {exc}"[:300])

    def _refuse(self, message: Outgoing) -> str | None:
        if message.channel != self.channel:
            return f"{self.provider} sends {self.channel}, not {message.channel}"
        for part, limit in (
            ("body", self.max_body),
            ("title", self.max_title),
            ("subject", self.max_subject),
        ):
            text = getattr(message, part)
            if limit is not None and text is not None and len(text) > limit:
                return f"{part} is {len(text)} characters; {self.provider} takes at most {limit}"
        return None

    @abc.abstractmethod
    def _send(self, message: Outgoing) -> SendResult:
        """Hand the message to the provider once; return what it said."""

    def close(self) -> None:  # noqa: B027 - adapters without a connection have nothing to close
        """Release connections (called when the worker stops)."""


class Failover(Channel):
    """Providers of one channel in order of preference: a transient failure of one (down,
    throttled) tries the next at once; a permanent failure is the message's, not the provider's,
    so it is final. The result names the provider that answered."""

    def __init__(self, providers: list[Channel]) -> None:
        if not providers:
            raise ValueError("failover needs at least one provider")
        kinds = {p.channel for p in providers}
        if len(kinds) != 1:
            raise ValueError(f"failover mixes channels: {sorted(kinds)}")
        self.channel = providers[0].channel  # type: ignore[misc]
        super().__init__("+".join(p.provider for p in providers))
        self.providers = providers

    def _refuse(self, message: Outgoing) -> str | None:
        return None  # each provider enforces its own limits

    def _send(self, message: Outgoing) -> SendResult:
        reasons = []
        for provider in self.providers:
            result = provider.send(message)
            if not isinstance(result, Transient):
                return result
            reasons.append(result.reason)
        return Transient("; ".join(reasons)[:300])

    def close(self) -> None:
        for provider in self.providers:
            provider.close()
