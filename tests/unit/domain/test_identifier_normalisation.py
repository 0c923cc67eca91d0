"""Identifier normalisation: one canonical form per identifier, or InvalidIdentifier saying why."""

from __future__ import annotations

import pytest

from omnicrm.domain.identifiers import KINDS, InvalidIdentifier, iban_valid, normalise

GOOD_IBAN = "UA213223130000026007233566001"
TOKEN_KINDS = [k for k in KINDS if k not in ("phone", "email", "account")]


@pytest.mark.parametrize(
    "raw",
    [
        "+380671234567",
        "380671234567",
        "0671234567",
        "067 123 45 67",
        "067-123-45-67",
        "(067) 123 45 67",
        "(067)1234567",
        "+38 (067) 123-45-67",
        "+38 067 123 45 67",
        " +380 67 123 4567 ",
    ],
)
def test_ukrainian_phone_formats_normalise_to_e164(raw: str) -> None:
    assert normalise("phone", raw) == "+380671234567"


def test_foreign_phone_keeps_its_country() -> None:
    assert normalise("phone", "+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    ["", "hello", "12345", "+38067123456", "+3806712345678", "067 123 45", "+999 123 456 789"],
)
def test_invalid_phones_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise("phone", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("john.doe@example.com", "john.doe@example.com"),
        ("John.Doe@Example.COM", "john.doe@example.com"),
        ("  MARIA@UKR.NET  ", "maria@ukr.net"),
        ("a+tag@sub.example.org", "a+tag@sub.example.org"),
    ],
)
def test_email_is_validated_and_lower_cased(raw: str, expected: str) -> None:
    assert normalise("email", raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "not-an-email", "a@b", "x@@y.com", "@example.com", "john@", "jo hn@x.com"]
)
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise("email", raw)


def test_iban_check_digits() -> None:
    assert iban_valid(GOOD_IBAN)
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("UA223223130000026007233566001")
    assert not iban_valid("GB83WEST12345698765432")


@pytest.mark.parametrize(
    "raw",
    [
        GOOD_IBAN,
        "ua213223130000026007233566001",
        "UA21 3223 1300 0002 6007 2335 6600 1",
        " ua21 3223 1300 0002 6007 2335 6600 1 ",
    ],
)
def test_good_iban_is_compacted_and_upper_cased(raw: str) -> None:
    assert normalise("account", raw) == GOOD_IBAN


@pytest.mark.parametrize(
    "raw",
    [
        "UA223223130000026007233566001",  # check digits off by one
        "UA213223130000026007233566002",  # last digit changed
        "UA21 3223 1300 0002 6007 2335 6600 2",
    ],
)
def test_iban_with_wrong_check_digits_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier, match="check digits"):
        normalise("account", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("26007233566001", "26007233566001"), ("acc-12/a", "ACC-12/A"), ("2600 7233 5660 01", "26007233566001")],
)
def test_non_iban_accounts_are_kept_as_upper_case_tokens(raw: str, expected: str) -> None:
    assert normalise("account", raw) == expected


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("C-123", "C-123"),
        ("  C-123 ", "C-123"),
        ("x", "x"),
        ("a" * 128, "a" * 128),
        ("x:y@z/w+v.u_t-s", "x:y@z/w+v.u_t-s"),
        ("DEP/2026/001", "DEP/2026/001"),
    ],
)
def test_tokens_are_trimmed_and_kept(kind: str, raw: str, expected: str) -> None:
    assert normalise(kind, raw) == expected


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@pytest.mark.parametrize(
    "raw",
    ["", "   ", "a" * 129, "a b", "-abc", ".abc", "abc;drop", "абв", "tab\tinside", "a\nb", "x*y"],
)
def test_bad_tokens_are_refused(kind: str, raw: str) -> None:
    with pytest.raises(InvalidIdentifier, match="1-128 characters"):
        normalise(kind, raw)


@pytest.mark.parametrize("kind", ["", "Phone", "passport", "card", "inn"])
def test_unknown_kind_is_refused(kind: str) -> None:
    with pytest.raises(InvalidIdentifier, match="unknown identifier kind"):
        normalise(kind, "value")


def test_invalid_identifier_is_a_value_error() -> None:
    assert issubclass(InvalidIdentifier, ValueError)
