"""SMS through Kannel's HTTP gateway: smsbox `/cgi-bin/sendsms`, its delivery receipts and MO texts.

Why Kannel: it is the open-source SMS gateway banks and operators run in front of their SMSCs
(SMPP, UCP, CIMD...). omnicrm talks to its smsbox over HTTP on kept-alive connections (one per
dispatch thread, see keepalive.py), so one adapter instance serves all threads at >1,000 SMS/s.

The idempotency key travels in the `dlr-url` Kannel calls back for each receipt, with an HMAC of
it when a secret is configured, so a receipt names the outbox row it belongs to and cannot be
forged. Kannel itself has no dedup: a send whose answer was lost (a read timeout) is reported as
`Transient` and may reach the phone twice if retried; that is the at-least-once edge.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Literal

from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Transient
from omnicrm.channels.keepalive import Answer, KeepAliveClient
from omnicrm.channels.sms_feedback import DeliveryReceipt, Inbound, ReceiptStatus
from omnicrm.channels.sms_text import segments

log = logging.getLogger(__name__)

# Kannel DLR types (dlr-mask bits): what each says about the message, in omnicrm's statuses.
DLR_DELIVERED = 1
DLR_FAILED = 2
DLR_BUFFERED = 4
DLR_SMSC_SUBMIT = 8
DLR_SMSC_REJECT = 16
DLR_STATUS: Mapping[int, ReceiptStatus] = {
    DLR_DELIVERED: "delivered",
    DLR_FAILED: "failed",
    DLR_BUFFERED: "sent",  # the SMSC holds it for a phone that is off: still on its way
    DLR_SMSC_SUBMIT: "sent",  # the SMSC accepted it
    DLR_SMSC_REJECT: "failed",
}
ALL_DLRS = DLR_DELIVERED | DLR_FAILED | DLR_BUFFERED | DLR_SMSC_SUBMIT | DLR_SMSC_REJECT

# Kannel's escape codes in a dlr-url: %d DLR type, %T its Unix time, %i SMSC id, %A the SMSC's
# answer text, %F the SMSC's (foreign) message id. Kannel URL-encodes what it substitutes.
DLR_ESCAPES = "status=%d&ts=%T&smsc=%i&answer=%A&fid=%F"


@dataclass(frozen=True, slots=True)
class KannelConfig:
    """Where smsbox listens and how omnicrm asks for receipts. `dlr_url` is omnicrm's webhook
    (e.g. https://crm.bank/v1/webhooks/kannel/dlr); `dlr_secret` signs the key in it."""

    sendsms_url: str  # http://kannel:13013/cgi-bin/sendsms
    username: str
    password: str = field(repr=False)
    sender: str  # the sender id ("from"), e.g. the bank's alphanumeric name
    dlr_url: str | None = None
    dlr_secret: bytes | None = field(default=None, repr=False)
    dlr_mask: int = ALL_DLRS
    smsc: str | None = None  # route through one smsc-id of the gateway
    method: Literal["GET", "POST"] = "GET"
    max_segments: int = 10  # the sendsms-user's `max-messages` in kannel.conf
    timeout: float = 10.0


def dlr_signature(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def verify_dlr(params: Mapping[str, str], secret: bytes) -> bool:
    """True when the `sig` of a callback matches its `key` (constant-time comparison)."""
    given = params.get("sig", "").encode()  # bytes: compare_digest refuses non-ASCII strings
    return hmac.compare_digest(given, dlr_signature(secret, params.get("key", "")).encode())


class KannelChannel(Channel):
    channel: ClassVar[str] = "sms"

    def __init__(self, provider: str, config: KannelConfig, *, rate_per_second: float | None = None) -> None:
        super().__init__(provider, rate_per_second=rate_per_second)
        self.config = config
        self._http = KeepAliveClient(config.sendsms_url, timeout=config.timeout)

    def params(self, message: Outgoing) -> dict[str, str]:
        """The sendsms parameters for one message (public so tests and tools can inspect them)."""
        cfg = self.config
        params = {
            "username": cfg.username,
            "password": cfg.password,
            "from": cfg.sender,
            "to": message.to,
            "text": message.body,
            "charset": "UTF-8",
        }
        if segments(message.body).coding == "ucs2":
            params["coding"] = "2"
        if cfg.smsc:
            params["smsc"] = cfg.smsc
        if cfg.dlr_url:
            params["dlr-mask"] = str(cfg.dlr_mask)
            params["dlr-url"] = self.dlr_url(message.idempotency_key)
        return params

    def dlr_url(self, key: str) -> str:
        assert self.config.dlr_url is not None
        query = {"key": key}
        if self.config.dlr_secret:
            query["sig"] = dlr_signature(self.config.dlr_secret, key)
        glue = "&" if "?" in self.config.dlr_url else "?"
        return f"{self.config.dlr_url}{glue}{urllib.parse.urlencode(query)}&{DLR_ESCAPES}"

    def _send(self, message: Outgoing) -> SendResult:
        split = segments(message.body)
        if split.count > self.config.max_segments:
            return Permanent(
                f"{split.count} SMS segments; {self.provider} sends at most {self.config.max_segments}"
            )
        params = self.params(message)
        try:
            answer = self._http.request(self.config.method, params)
        except http.client.HTTPException as exc:  # a garbled or missing answer: the gateway may be back soon
            return Transient(f"{self.provider}: {type(exc).__name__}: {exc}"[:300])
        # OSError (refused, reset, timed out) propagates: Channel.send makes it Transient.
        result = self._result(answer, message.idempotency_key, split.count, split.coding)
        log.debug("kannel %s: %s -> %s", self.provider, message.idempotency_key, answer.status)
        return result

    def _result(self, answer: Answer, key: str, count: int, coding: str) -> SendResult:
        body = answer.body.strip()[:200]
        code = answer.status
        if code == 202 or (200 <= code < 300 and body[:2] in ("0:", "3:")):
            return Accepted(self.provider, key, {"segments": count, "coding": coding})
        if code in (429, 503) or code >= 500:
            return Transient(f"{self.provider}: HTTP {code}: {body}", _retry_after(answer))
        if code in (401, 403) and "authorization" in body.lower():
            # our credentials, not the message: retrying (or failing over) is right, dead-lettering is not
            return Transient(f"{self.provider}: HTTP {code}: {body}")
        return Permanent(f"{self.provider}: HTTP {code}: {body}")

    def close(self) -> None:
        self._http.close()


def _retry_after(answer: Answer) -> float | None:
    value = answer.retry_after or ""
    return float(value) if value.isdigit() else None


def parse_dlr(params: Mapping[str, str]) -> DeliveryReceipt:
    """A Kannel dlr-url callback (its query parameters) as a `DeliveryReceipt`.

    Raises ValueError for a callback that is not one of ours (no key, unknown DLR type)."""
    key = params.get("key", "")
    if not key:
        raise ValueError("DLR without the message key")
    try:
        dlr_type = int(params.get("status", ""))
        stamp = int(params.get("ts", "") or 0)
    except ValueError:
        raise ValueError("DLR with a non-numeric type or time") from None
    status = DLR_STATUS.get(dlr_type)
    if status is None:
        raise ValueError(f"unknown Kannel DLR type {dlr_type}")
    # Kannel retries a failed callback with the same values: key + type + SMSC id make it one event.
    event = f"kannel:{key}:{dlr_type}:{params.get('fid', '')}"
    at = datetime.fromtimestamp(stamp, UTC) if stamp else datetime.now(UTC)
    return DeliveryReceipt(key, status, event, at, params.get("answer") or None, params.get("fid") or None)


def parse_mo(params: Mapping[str, str]) -> Inbound:
    """A Kannel sms-service get-url call (from=%p&to=%P&text=%a&id=%I&ts=%T) as an `Inbound`."""
    msisdn = params.get("from", "")
    event = params.get("id", "")
    if not msisdn or not event:
        raise ValueError("MO without a sender or Kannel's message id")
    stamp = params.get("ts", "")
    at = datetime.fromtimestamp(int(stamp), UTC) if stamp.isdigit() else None
    return Inbound(msisdn, params.get("text", ""), f"kannel:{event}", params.get("to") or None, at)
