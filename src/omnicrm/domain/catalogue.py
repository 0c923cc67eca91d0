"""The event catalogue: event type -> kind, attribute schema and product lifecycle effect.

The catalogue is data (catalogue/events.yaml). `compile_catalogue` checks it and turns every type
into a Pydantic model built once, so validating an event's attributes is a single fast call.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from omnicrm.domain.errors import ItemError
from omnicrm.domain.vocabulary import PRODUCT_CLASSES, PRODUCT_STATES

EventKind = Literal["behavioural", "operational", "interaction", "reaction"]
_NAME = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_ATTR = r"^[a-z][a-z0-9_]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributeSpec(_Strict):
    type: Literal["string", "integer", "number", "boolean", "date", "datetime", "enum"]
    required: bool = False
    values: list[str] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int = Field(default=500, ge=1, le=10_000)

    @model_validator(mode="after")
    def _enum_has_values(self) -> AttributeSpec:
        if (self.type == "enum") != bool(self.values):
            raise ValueError("`values` is required for type enum and allowed only there")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "number"):
            raise ValueError("`min`/`max` apply to integer and number only")
        return self


class ProductEffectSpec(_Strict):
    class_: str | None = Field(default=None, alias="class")
    class_from: str | None = None
    contract_from: str
    state: str

    @model_validator(mode="after")
    def _one_class_source(self) -> ProductEffectSpec:
        if (self.class_ is None) == (self.class_from is None):
            raise ValueError("give exactly one of `class` and `class_from`")
        if self.class_ is not None:
            if self.class_ not in PRODUCT_CLASSES:
                raise ValueError(f"unknown product class {self.class_!r}")
            if self.state not in PRODUCT_STATES[self.class_]:
                raise ValueError(f"state {self.state!r} is not a lifecycle state of {self.class_}")
        elif not any(self.state in states for states in PRODUCT_STATES.values()):
            raise ValueError(f"unknown lifecycle state {self.state!r}")
        return self


class EventTypeSpec(_Strict):
    kind: EventKind
    description: str = Field(min_length=1)
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict)
    product: ProductEffectSpec | None = None
    system_only: bool = False  # written by omnicrm itself (a campaign launch), refused from outside

    @model_validator(mode="after")
    def _effect_refers_to_attributes(self) -> EventTypeSpec:
        if self.product is not None:
            for ref in (self.product.class_from, self.product.contract_from):
                if ref is not None and ref not in self.attributes:
                    raise ValueError(f"product effect refers to undeclared attribute {ref!r}")
                if ref is not None and not self.attributes[ref].required:
                    raise ValueError(f"product effect needs attribute {ref!r} to be required")
            contract = self.attributes.get(self.product.contract_from)
            if contract is not None and (contract.type != "string" or contract.max_length > 64):
                raise ValueError("`contract_from` must name a string attribute with max_length of at most 64")
            source = self.attributes.get(self.product.class_from or "")
            if source is not None:
                classes = source.values or []
                if source.type != "enum" or any(c not in PRODUCT_CLASSES for c in classes):
                    raise ValueError("`class_from` must name an enum attribute of product classes")
                if not all(self.product.state in PRODUCT_STATES[c] for c in classes):
                    raise ValueError(f"state {self.product.state!r} is not a lifecycle state of every class")
        return self


class CatalogueSpec(_Strict):
    version: int = Field(ge=1)
    types: dict[str, EventTypeSpec]

    @model_validator(mode="after")
    def _names(self) -> CatalogueSpec:
        for name, spec in self.types.items():
            if not re.match(_NAME, name):
                raise ValueError(f"type name {name!r} must be dotted lower-case words")
            for attr in spec.attributes:
                if not re.match(_ATTR, attr):
                    raise ValueError(f"attribute name {attr!r} in {name} must be snake_case")
        return self


@dataclass(frozen=True, slots=True)
class ProductEffect:
    """How an event moves a product: which class, which contract, which new state."""

    product_class: str | None
    class_from: str | None
    contract_from: str
    state: str

    def target(self, attributes: Mapping[str, Any]) -> tuple[str, str, str]:
        """(product class, contract number, new state) for one event's cleaned attributes."""
        product_class = self.product_class or str(attributes[self.class_from or ""])
        return product_class, str(attributes[self.contract_from]), self.state


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    kind: EventKind
    description: str
    model: type[BaseModel]
    product: ProductEffect | None
    sample: Mapping[str, Any]  # every attribute with a typical value, to test-run conditions at load
    system_only: bool = False

    def clean(
        self, attributes: Mapping[str, Any], index: int | None = None
    ) -> dict[str, Any] | list[ItemError]:
        """Cleaned JSON-ready attributes, or the list of what is wrong with them."""
        try:
            value = self.model.model_validate(attributes)
        except ValidationError as exc:
            return [
                ItemError(index, "attributes." + ".".join(str(p) for p in err["loc"]), err["msg"])
                for err in exc.errors(include_url=False)
            ]
        return value.model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: int
    types: Mapping[str, EventType]

    def get(self, name: str) -> EventType | None:
        return self.types.get(name)

    def names(self, *kinds: str) -> list[str]:
        return sorted(n for n, t in self.types.items() if not kinds or t.kind in kinds)


def _field(spec: AttributeSpec) -> tuple[Any, Any]:
    annotation: Any
    constraints: dict[str, Any] = {}
    if spec.type == "string":
        annotation, constraints = str, {"min_length": 1, "max_length": spec.max_length}
    elif spec.type == "enum":
        annotation = Literal[tuple(spec.values or ())]
    elif spec.type in ("integer", "number"):
        annotation = int if spec.type == "integer" else float
        constraints = {"ge": spec.min, "le": spec.max}
    elif spec.type == "boolean":
        annotation = bool
    elif spec.type == "date":
        annotation = dt.date
    else:
        annotation = AwareDatetime
    if spec.required:
        return annotation, Field(..., **constraints)
    return annotation | None, Field(None, **constraints)


_SAMPLES: dict[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
    "date": "2026-01-01",
    "datetime": "2026-01-01T00:00:00Z",
}


def _sample(spec: AttributeSpec) -> Any:
    return spec.values[0] if spec.values else _SAMPLES[spec.type]


def compile_catalogue(data: object) -> Catalogue:
    """Check raw catalogue data and compile it; raises pydantic.ValidationError on bad data."""
    spec = CatalogueSpec.model_validate(data)
    types: dict[str, EventType] = {}
    for name, type_spec in spec.types.items():
        fields = {attr: _field(a) for attr, a in type_spec.attributes.items()}
        model = create_model(  # type: ignore[call-overload]
            "Attrs_" + name.replace(".", "_"), __config__=ConfigDict(extra="forbid"), **fields
        )
        effect = None
        if type_spec.product is not None:
            p = type_spec.product
            effect = ProductEffect(p.class_, p.class_from, p.contract_from, p.state)
        sample = {attr: _sample(a) for attr, a in type_spec.attributes.items()}
        types[name] = EventType(
            name, type_spec.kind, type_spec.description, model, effect, sample, type_spec.system_only
        )
    return Catalogue(spec.version, types)
