"""Provider webhooks: signed, validated, then taken report by report (services/feedback/intake.py).

A provider signs each call with its own secret (settings: OMNICRM_WEBHOOK_SECRETS):

    X-Omnicrm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The signature is checked with `hmac.compare_digest` over the raw bytes before the body is parsed,
and a timestamp older than `TOLERANCE` is refused (a captured call cannot be replayed later; an
honest retry inside the window is deduplicated by the report's id anyway). The body is the
provider-neutral form of the status dictionary (README: feedback):

    {"events": [{"id": "...", "message_id": "<our idempotency key>" | "provider_id": "...",
                 "status": "delivered", "occurred_at": "2026-12-02T10:00:00Z", "reason": "..."}]}

Every event is validated before anything is written; one bad event refuses the whole call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from omnicrm.domain.errors import InvalidInput, ItemError, NotFound, Unauthenticated
from omnicrm.domain.statuses import STATUSES
from omnicrm.services.feedback.intake import Report

TOLERANCE_S = 300
HEADER = "X-Omnicrm-Signature"
_Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: _Id
    message_id: _Id | None = None
    provider_id: _Id | None = None
    status: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    occurred_at: AwareDatetime
    reason: Annotated[str, StringConstraints(max_length=300)] | None = None

    @model_validator(mode="after")
    def _names_a_message(self) -> WebhookEvent:
        if (self.message_id is None) == (self.provider_id is None):
            raise ValueError("give exactly one of message_id and provider_id")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; known: {', '.join(STATUSES)}")
        return self


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[WebhookEvent] = Field(min_length=1, max_length=1000)


def sign(secret: str, body: bytes, at: int) -> str:
    """The header value a provider sends (also what tests and the README's example use)."""
    mac = hmac.new(secret.encode(), str(at).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify(provider: str, secrets: Mapping[str, str], header: str | None, body: bytes, now: datetime) -> None:
    """Raise unless `header` is `provider`'s valid, fresh signature of `body`."""
    secret = secrets.get(provider)
    if secret is None:
        raise NotFound(f"no webhook is configured for provider {provider!r}")
    fields = dict(part.split("=", 1) for part in (header or "").split(",") if "=" in part)
    try:
        at = int(fields.get("t", ""))
    except ValueError:
        raise Unauthenticated(f"missing or malformed {HEADER} header") from None
    expected = sign(secret, body, at).split("v1=", 1)[1]
    if not hmac.compare_digest(expected.encode(), fields.get("v1", "").encode()):
        raise Unauthenticated("the webhook signature does not match")
    if abs(now.timestamp() - at) > TOLERANCE_S:
        raise Unauthenticated(f"the webhook signature is older than {TOLERANCE_S} s")


def reports(provider: str, body: bytes) -> list[Report]:
    """The body's events as reports; InvalidInput lists every problem (nothing is taken then)."""
    try:
        parsed = WebhookBody.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            ItemError(
                e["loc"][1] if len(e["loc"]) > 1 and isinstance(e["loc"][1], int) else None,
                ".".join(str(p) for p in e["loc"]) or "(body)",
                e["msg"],
            )
            for e in exc.errors(include_url=False)
        ]
        raise InvalidInput("the webhook body was refused; nothing was recorded", errors) from None
    return [
        Report(
            source=provider,
            event_id=e.id,
            status=e.status,
            occurred_at=e.occurred_at,
            message_key=e.message_id,
            provider_id=e.provider_id,
            reason=e.reason,
        )
        for e in parsed.events
    ]
