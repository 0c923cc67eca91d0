"""Customer identifiers of every kind and their canonical (normalised) form."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

IdentifierKind = Literal[
    "phone", "email", "cbs_id", "crm_id", "account", "contract", "device_id", "cookie_id", "messenger_id"
]
KINDS: Final[tuple[IdentifierKind, ...]] = (
    "phone",
    "email",
    "cbs_id",
    "crm_id",
    "account",
    "contract",
    "device_id",
    "cookie_id",
    "messenger_id",
)
DEFAULT_REGION: Final = "UA"
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")


class InvalidIdentifier(ValueError):
    """The value is not a valid identifier of its kind; the message says why."""


@lru_cache(maxsize=65536)
def normalise_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """Return the phone number in E.164 (+380671234567) or raise InvalidIdentifier."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentifier("not a valid phone number for its country")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=65536)
def normalise_email(value: str) -> str:
    """Return the e-mail address validated and lower-cased, or raise InvalidIdentifier."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidIdentifier(str(exc)) from None
    return str(result.normalized).lower()


def iban_valid(iban: str) -> bool:
    """True when the IBAN's ISO 13616 mod-97 check digits are right."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == 1


def normalise_account(value: str) -> str:
    """Account numbers: IBANs are upper-cased, stripped of spaces and checked; others kept as tokens."""
    compact = re.sub(r"\s", "", value).upper()
    if _IBAN.match(compact):
        if not iban_valid(compact):
            raise InvalidIdentifier("IBAN check digits are wrong")
        return compact
    return normalise_token(compact)


def normalise_token(value: str) -> str:
    """Opaque identifiers (ids, cookies, contract numbers): trimmed, 1-128 safe characters."""
    token = value.strip()
    if not _TOKEN.match(token):
        raise InvalidIdentifier("must be 1-128 characters: letters, digits and . _ : @ / + -")
    return token


def normalise(kind: str, value: str) -> str:
    """Canonical form of an identifier of the given kind; raises InvalidIdentifier."""
    if kind == "phone":
        return normalise_phone(value)
    if kind == "email":
        return normalise_email(value)
    if kind == "account":
        return normalise_account(value)
    if kind in KINDS:
        return normalise_token(value)
    raise InvalidIdentifier(f"unknown identifier kind {kind!r}; known: {', '.join(KINDS)}")
