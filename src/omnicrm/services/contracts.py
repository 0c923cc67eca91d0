"""Input shapes of the use cases (API bodies, import lines), validated with extra="forbid"."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from omnicrm.domain.identifiers import IdentifierKind
from omnicrm.domain.vocabulary import (
    Channel,
    CustomerStatus,
    ProductClass,
    Purpose,
    RelationshipKind,
    ValueTier,
)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Source = Literal["mobile_app", "web", "branch", "core_banking", "call_centre", "crm", "channel", "import"]
Touchpoint = Literal["mobile", "web", "branch", "email", "sms", "webpush", "inapp", "callcentre", "core"]
Language = Literal["uk", "en"]
_ZONES = frozenset(available_timezones())
# The server takes only IANA zone names (`_known_zone` below): the schema lists them, so that a
# request the schema allows is one the server takes. Booleans are strict for the same reason:
# "yes" or 1 are not in the schema, so they are refused rather than coerced.
Zone = Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(_ZONES)})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=2000)


class IdentifierIn(Strict):
    kind: IdentifierKind
    value: Annotated[str, StringConstraints(min_length=1, max_length=160)]


class PreferencesIn(Strict):
    preferred_channel: Channel | None = None
    contact_window_start: dt.time | None = None
    contact_window_end: dt.time | None = None
    language: Language | None = None


class ConstraintsIn(Strict):
    do_not_contact: StrictBool | None = None
    vulnerable: StrictBool | None = None
    fraud_case_open: StrictBool | None = None
    channel_blacklist: list[Channel] | None = None


class ConsentIn(Strict):
    channel: Channel
    purpose: Purpose
    granted: StrictBool
    legal_basis: Literal["consent", "contract", "legal_obligation", "legitimate_interest"] = "consent"
    source: Annotated[str, StringConstraints(min_length=1, max_length=32)] = "api"
    effective_at: AwareDatetime | None = None


class ProductIn(Strict):
    product_class: ProductClass
    contract_number: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")]
    state: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    opened_at: dt.date | None = None
    closed_at: dt.date | None = None
    maturity_date: dt.date | None = None
    terms: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)


class RelationshipIn(Strict):
    kind: RelationshipKind
    related: IdentifierIn
    note: Annotated[str, StringConstraints(max_length=200)] | None = None


_BIRTH_DATE = r"^(19[0-9]{2}|20[0-2][0-9])-[0-9]{2}-[0-9]{2}$|^2030-01-01$"  # 1900-01-01 to 2030-01-01


class CustomerFields(Strict):
    """Fields of a profile that a client, operator or core banking can set."""

    # May be left out, never null (the column is NOT NULL): null is not in the schema, and refused.
    status: CustomerStatus | SkipJsonSchema[None] = None
    first_name: Name | None = None
    middle_name: Name | None = None
    last_name: Name | None = None
    # The plausible range (_plausible_birth) in the schema too, so a schema-valid date is accepted.
    date_of_birth: dt.date | None = Field(default=None, json_schema_extra={"pattern": _BIRTH_DATE})
    language: Language | None = None
    timezone: Zone | None = None
    branch: Label | None = None
    relationship_manager: Name | None = None
    value_tier: ValueTier | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # only an explicit null: a left-out field is not validated
            raise ValueError("may be left out but not null")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _ZONES:
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @field_validator("date_of_birth")
    @classmethod
    def _plausible_birth(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and not dt.date(1900, 1, 1) <= value <= dt.date(2030, 1, 1):
            raise ValueError("date of birth is out of range")
        return value


class CustomerIn(CustomerFields):
    """A profile to create, or to merge into the existing one its identifiers point to."""

    identifiers: list[IdentifierIn] = Field(min_length=1, max_length=50)
    preferences: PreferencesIn | None = None
    constraints: ConstraintsIn | None = None
    segments: list[Label] = Field(default_factory=list, max_length=100)
    consents: list[ConsentIn] = Field(default_factory=list, max_length=100)
    products: list[ProductIn] = Field(default_factory=list, max_length=100)
    relationships: list[RelationshipIn] = Field(default_factory=list, max_length=50)


class CustomerPatch(CustomerFields):
    """A partial update of a profile; absent fields are left as they are."""

    preferences: PreferencesIn | None = None
    constraints: ConstraintsIn | None = None
    segments: list[Label] | None = Field(default=None, max_length=100)


class EventIn(Strict):
    """A behavioural, operational or reaction event, or a CRM interaction (same envelope)."""

    event_id: EventId
    type: Annotated[str, StringConstraints(min_length=3, max_length=64)]
    occurred_at: AwareDatetime
    source: Source
    channel: Touchpoint | None = None
    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    identifiers: dict[IdentifierKind, Annotated[str, StringConstraints(min_length=1, max_length=160)]] = (
        Field(default_factory=dict)
    )
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=50)


class MassUpdateFilter(Strict):
    status: CustomerStatus | None = None
    value_tier: ValueTier | None = None
    branch: Label | None = None
    language: Language | None = None
    segment: Label | None = None
    has_product: ProductClass | None = None


class MassUpdateSet(Strict):
    value_tier: ValueTier | None = None
    branch: Label | None = None
    relationship_manager: Name | None = None
    language: Language | None = None
    add_segment: Label | None = None
    remove_segment: Label | None = None


class MassUpdateIn(Strict):
    filter: MassUpdateFilter
    set: MassUpdateSet
    dry_run: StrictBool = True
    reason: Annotated[str, StringConstraints(min_length=3, max_length=200)]
