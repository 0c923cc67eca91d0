"""The CloudEvents 1.0 envelope (structured JSON mode) that the broker bridge speaks both ways.

Inbound, a bank system's CloudEvent becomes the JSON object `POST /v1/events` takes, so broker
events go through the same validation, dedup (by `event_id` = the CloudEvent `id`) and storage as
HTTP ones. Outbound, a message status on the timeline becomes a CloudEvent of type
`ua.omnicrm.message.<status>` whose `subject` is the customer id; its data holds ids and codes only,
never an address, a phone number or a text, since every consumer of the topic can read it.

The spec lets producers add extension attributes beside the context attributes, so the top level
cannot forbid extras outright: it takes those that follow the spec's naming rule (lower-case letters
and digits, at most 20) with string, integer or boolean values, and refuses anything else. The data
payloads, which are ours, forbid extra fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

CONTENT_TYPE = "application/cloudevents+json"  # the structured mode's media type
DATA_CONTENT_TYPE = "application/json"
STATUS_TYPE_PREFIX = "ua.omnicrm.message."
OMNICRM_SOURCE = "urn:omnicrm"
# The statuses a message reports to other systems (domain/lifecycle.py plus the reactions of the
# `message.reaction` catalogue entry). Anything else is refused: a typo would make a new topic.
STATUSES = frozenset(
    {
        "sending",
        "sent",
        "delivered",
        "opened",
        "clicked",
        "replied",
        "unsubscribed",
        "bounced",
        "complained",
        "failed",
        "dead",
        "withdrawn",
    }
)
# Where a bank system's `source` URI maps to omnicrm's `source` vocabulary (services/contracts.py).
DEFAULT_SOURCES: Mapping[str, str] = {
    "/core-banking": "core_banking",
    "/mobile-app": "mobile_app",
    "/web": "web",
    "/branch": "branch",
    "/call-centre": "call_centre",
    "/crm": "crm",
}

_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
NonEmpty = Annotated[StrictStr, Field(min_length=1, max_length=1000)]


class InvalidEnvelope(ValueError):
    """A message that is not a CloudEvent we take; `reason` names fields and rules, never values
    (the message body may hold personal data and reasons end up in dead-letter headers and logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:300]


class CloudEvent(BaseModel):
    """One CloudEvents 1.0 event; `data` is JSON (the bridge never carries `data_base64`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: NonEmpty
    source: NonEmpty
    type: NonEmpty
    time: AwareDatetime | None = None
    subject: NonEmpty | None = None
    datacontenttype: Literal["application/json"] | None = None
    dataschema: NonEmpty | None = None
    data: Any = None

    @model_validator(mode="after")
    def _extensions(self) -> CloudEvent:
        for name, value in (self.model_extra or {}).items():
            if name == "data_base64":
                raise ValueError("data_base64: binary data is not taken; send JSON in `data`")
            if not _EXTENSION_NAME.match(name):
                raise ValueError(f"{name[:40]!r}: an extension name is 1-20 lower-case letters or digits")
            if not isinstance(value, str | int | bool):
                raise ValueError(f"{name}: an extension value is a string, an integer or a boolean")
        return self

    @property
    def extensions(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def to_json(self) -> bytes:
        """The structured-mode body: context attributes, extensions and data in one JSON object."""
        out: dict[str, Any] = {"specversion": self.specversion, "id": self.id, "source": self.source}
        out["type"] = self.type
        for name in ("subject", "datacontenttype", "dataschema"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.time is not None:
            out["time"] = self.time.isoformat().replace("+00:00", "Z")  # RFC 3339, offset kept
        out.update(self.extensions)
        if self.data is not None:
            out["data"] = self.data
        return orjson.dumps(out)


def parse(body: bytes | str) -> CloudEvent:
    """A CloudEvent from a structured-mode body, or `InvalidEnvelope` saying which fields are wrong."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEnvelope(f"not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(raw, dict):
        raise InvalidEnvelope("a structured CloudEvent is a JSON object")
    try:
        return CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEnvelope(_reason(exc)) from None


def _reason(exc: ValidationError, prefix: str = "") -> str:
    """Field and rule of each error, without the offending input (it may be personal)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = prefix + ".".join(str(p) for p in error["loc"]) or "(event)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ inbound
class InboundData(BaseModel):
    """The `data` of a bank system's event: who it is about and what happened, in omnicrm's words."""

    model_config = ConfigDict(extra="forbid")

    identifiers: dict[str, StrictStr] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    channel: StrictStr | None = None
    customer_id: StrictStr | None = None


def to_event_json(
    event: CloudEvent, *, type_prefix: str = "", sources: Mapping[str, str] = DEFAULT_SOURCES
) -> dict[str, Any]:
    """The object `POST /v1/events` takes for a bank system's CloudEvent.

    `id` becomes `event_id` (so a redelivered or republished event is a duplicate at intake),
    `type` loses `type_prefix` (`ua.bank.product.opened` -> `product.opened`), `time` is required
    (it is when the event happened), `source` is looked up in `sources`, and `subject`, when given,
    is the omnicrm customer id. The catalogue check is intake's, not the bridge's."""
    if event.time is None:
        raise InvalidEnvelope("time: an event needs the time it happened")
    if type_prefix and not event.type.startswith(type_prefix):
        raise InvalidEnvelope(f"type: expected a type starting with {type_prefix!r}")
    source = sources.get(event.source)
    if source is None:
        raise InvalidEnvelope(f"source: {event.source[:80]!r} is not a configured bank system")
    try:
        data = InboundData.model_validate(event.data if event.data is not None else {})
    except ValidationError as exc:
        raise InvalidEnvelope(_reason(exc, "data.")) from None
    customer_id = data.customer_id or event.subject
    out: dict[str, Any] = {
        "event_id": event.id,
        "type": event.type[len(type_prefix) :],
        "occurred_at": event.time.isoformat(),
        "source": source,
        "identifiers": data.identifiers,
        "attributes": data.attributes,
    }
    if data.channel is not None:
        out["channel"] = data.channel
    if customer_id is not None:
        out["customer_id"] = customer_id
    return out


def from_event_json(
    item: Mapping[str, Any],
    *,
    source_uri: str,
    type_prefix: str = "",
    extensions: Mapping[str, Any] | None = None,
) -> CloudEvent:
    """The CloudEvent a bank system would send for an omnicrm event object (the inverse of
    `to_event_json`): used by tests and by a bank team to see what to publish."""
    data: dict[str, Any] = {"identifiers": dict(item.get("identifiers") or {})}
    data["attributes"] = dict(item.get("attributes") or {})
    if item.get("channel") is not None:
        data["channel"] = item["channel"]
    occurred = item["occurred_at"]
    return CloudEvent.model_validate(
        {
            "specversion": "1.0",
            "id": item["event_id"],
            "source": source_uri,
            "type": f"{type_prefix}{item['type']}",
            "time": occurred if isinstance(occurred, datetime) else datetime.fromisoformat(occurred),
            "subject": item.get("customer_id"),
            "datacontenttype": DATA_CONTENT_TYPE,
            "data": data,
            **(extensions or {}),
        }
    )


# ----------------------------------------------------------------------------------------- outbound
class StatusData(BaseModel):
    """The `data` of an outbound status event: ids and codes only, so it may go to any topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: NonEmpty
    status: StrictStr
    channel: StrictStr | None = None
    provider: StrictStr | None = None
    attempt: StrictInt | None = None
    final: StrictBool = False


def status_event(
    *,
    event_id: str,
    customer_id: str,
    message_id: str,
    status: str,
    occurred_at: datetime,
    channel: str | None = None,
    provider: str | None = None,
    attempt: int | None = None,
    source: str = OMNICRM_SOURCE,
) -> CloudEvent:
    """The CloudEvent other systems receive when a message changes status. `event_id` is the
    timeline event's id, so a republished status keeps its id and consumers dedup by it."""
    if status not in STATUSES:
        raise ValueError(f"unknown message status {status!r}")
    data = StatusData(
        message_id=message_id,
        status=status,
        channel=channel,
        provider=provider,
        attempt=attempt,
        final=status in {"dead", "withdrawn", "bounced", "unsubscribed", "complained"},
    )
    return CloudEvent(
        specversion="1.0",
        id=event_id,
        source=source,
        type=f"{STATUS_TYPE_PREFIX}{status}",
        time=occurred_at,
        subject=customer_id,
        datacontenttype=DATA_CONTENT_TYPE,
        data=data.model_dump(exclude_none=True),
    )


def from_timeline(row: Mapping[str, Any], *, source: str = OMNICRM_SOURCE) -> CloudEvent:
    """A status event from a timeline row (`events` table) of type `message.reaction`: only the
    message id and the reaction are taken from its attributes, whatever else they hold."""
    attributes = row["attributes"] or {}
    return status_event(
        event_id=row["event_id"],
        customer_id=row["customer_id"],
        message_id=str(attributes["message_id"]),
        status=str(attributes["reaction"]),
        occurred_at=row["occurred_at"],
        channel=row.get("channel"),
        source=source,
    )


def routing_key(event: CloudEvent) -> str:
    """The broker topic of an event: its type (`ua.omnicrm.message.delivered`), so subscribers
    bind to `ua.omnicrm.message.*` or to one status."""
    return event.type
