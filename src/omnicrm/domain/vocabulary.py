"""The closed vocabularies of the business: channels, purposes, products, tiers, roles."""

from __future__ import annotations

from typing import Final, Literal

Channel = Literal["email", "sms", "webpush", "inapp", "callcentre"]
CHANNELS: Final[tuple[Channel, ...]] = ("email", "sms", "webpush", "inapp", "callcentre")

Purpose = Literal["service", "marketing"]
PURPOSES: Final[tuple[Purpose, ...]] = ("service", "marketing")

# Where an event or interaction came from (the touchpoint, not the outbound channel).
SOURCES: Final = ("mobile_app", "web", "branch", "core_banking", "call_centre", "crm", "channel", "import")

CustomerStatus = Literal["prospect", "client"]
ValueTier = Literal["mass", "affluent", "premium", "private"]
VALUE_TIERS: Final[tuple[ValueTier, ...]] = ("mass", "affluent", "premium", "private")

ProductClass = Literal["current_account", "deposit", "card", "consumer_loan", "salary_project", "insurance"]
PRODUCT_CLASSES: Final[tuple[ProductClass, ...]] = (
    "current_account",
    "deposit",
    "card",
    "consumer_loan",
    "salary_project",
    "insurance",
)
# The lifecycle states each product class can be in (the fourth information layer of the paper).
PRODUCT_STATES: Final[dict[str, tuple[str, ...]]] = {
    "current_account": ("applied", "active", "dormant", "closed"),
    "deposit": ("applied", "active", "maturing", "renewed", "closed"),
    "card": ("applied", "issued", "active", "blocked", "closed"),
    "consumer_loan": ("applied", "approved", "rejected", "active", "arrears", "repaid", "closed"),
    "salary_project": ("active", "closed"),
    "insurance": ("applied", "active", "lapsed", "closed"),
}

# Holding a product in one of these states makes a prospect a client.
CLIENT_STATES: Final = frozenset({"active", "issued", "maturing", "renewed", "arrears", "dormant"})

RelationshipKind = Literal["household", "spouse", "employer", "guarantor"]

Role = Literal["admin", "operator", "marketer", "compliance", "auditor", "integration", "monitoring"]
ROLES: Final[tuple[Role, ...]] = (
    "admin",
    "operator",
    "marketer",
    "compliance",
    "auditor",
    "integration",
    "monitoring",
)
