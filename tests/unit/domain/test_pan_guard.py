"""PAN detection: real card numbers are found in any text, look-alikes (IBANs, phones, dates) are not."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicrm.api.pan_guard import holds_pan
from omnicrm.domain.pan import contains_pan, find_pan_paths, luhn_valid, mask

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"


def luhn_check_digit(payload: str) -> str:
    """The digit that makes `payload + digit` pass the Luhn check."""
    for digit in "0123456789":
        if luhn_valid(payload + digit):
            return digit
    raise AssertionError("unreachable: one check digit always exists")


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        (VISA, True),
        (MASTERCARD, True),
        (AMEX, True),
        ("79927398713", True),  # the textbook Luhn example
        ("0", True),
        ("4111111111111112", False),
        ("79927398710", False),
        ("1234567890123456", False),
    ],
)
def test_luhn_valid(digits: str, expected: bool) -> None:
    assert luhn_valid(digits) is expected


@pytest.mark.parametrize(
    "text",
    [
        VISA,
        MASTERCARD,
        AMEX,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",
        "5555-5555-5555-4444",
        "3782 822463 10005",
        "3782-822463-10005",
        "Card number: 4111111111111111, thanks",
        "карта 5555 5555 5555 4444 клієнта",
        "(4111111111111111)",
        "call +380671234567 about 4111-1111-1111-1111",
        "card 4111111111111111 exp 12/25 cvv 123",
    ],
)
def test_real_card_numbers_are_detected(text: str) -> None:
    assert contains_pan(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no digits here",
        "4111111111111112",  # Luhn-invalid 16 digits
        "4111 1111 1111 1112",
        "1234567890123456",
        "UA213223130000026007233566001",  # Ukrainian IBAN, compact
        "IBAN: UA213223130000026007233566001.",
        "+380671234567",
        "380671234567",
        "067 123 45 67",
        "+38 (067) 123-45-67",
        "+380671234567 +380671234568",
        "2026-11-20T12:00:00+02:00",
        "2026-11-20T12:00:00.123456Z",
        "2026-11-20 12:00:00",
        "2026-11-20 2026-11-21",
        "4111111111111111111111",  # 22-digit run holding a PAN prefix
        "12345678901234567890123",
        "00000000000000000000",
        "0000000000000000",  # Luhn-valid but no card scheme starts with 0
        "1111111111111117",  # Luhn-valid, no card scheme starts with 1
        "411111111111",  # 12 digits: too short for a card
    ],
)
def test_look_alikes_are_not_card_numbers(text: str) -> None:
    assert not contains_pan(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111 123",  # PAN + CVV
        "4111 1111 1111 1111 12/25",  # PAN + expiry
        "5555555555554444 12-25",
        "qty 1 4111111111111111",
    ],
)
def test_card_number_next_to_a_short_digit_group_is_detected(text: str) -> None:
    assert contains_pan(text)


def test_iban_in_printed_groups_is_not_a_card_number() -> None:
    assert not contains_pan("UA50 3223 1323 2805 9832 4682 0341 7")


def test_a_card_number_between_letters_that_pass_for_an_iban_is_still_detected() -> None:
    # Found by the property below: "RR40 0498 0720 8962 90KR" passes the mod-97 check, but RR is no
    # IBAN country and an IBAN of that shape has no country's length, so it is not an IBAN to skip.
    assert contains_pan("RR4004980720896290KR")


# No character that reads as a digit once normalised (NFKC: "²", "４"; any Unicode decimal digit).
_NON_DIGIT_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Nd"]).filter(
        lambda c: not any(ch.isdigit() for ch in unicodedata.normalize("NFKC", c))
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.text(alphabet="0123456789", min_size=14, max_size=14),
    separator=st.sampled_from(["", " ", "-"]),
    before=_NON_DIGIT_TEXT,
    after=_NON_DIGIT_TEXT,
)
def test_any_luhn_valid_visa_number_in_text_is_detected(
    payload: str, separator: str, before: str, after: str
) -> None:
    number = "4" + payload
    number += luhn_check_digit(number)
    assert luhn_valid(number)
    grouped = separator.join(number[i : i + 4] for i in range(0, 16, 4))
    assert contains_pan(before + grouped + after)


@settings(max_examples=100, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=12, max_size=18),
    position=st.integers(min_value=0),
    shift=st.integers(min_value=1, max_value=9),
)
def test_luhn_catches_every_single_digit_error(digits: str, position: int, shift: int) -> None:
    number = digits + luhn_check_digit(digits)
    index = position % len(number)
    wrong = (int(number[index]) + shift) % 10
    mutated = number[:index] + str(wrong) + number[index + 1 :]
    assert not luhn_valid(mutated)


def test_find_pan_paths_on_nested_data() -> None:
    payload = {
        "event_id": "e-1",
        "phone": "+380671234567",
        "iban": "UA213223130000026007233566001",
        "items": [
            {"attributes": {"note": "ok"}},
            {"attributes": {"note": "still ok", "amount": 5}},
            {"attributes": {"note": f"card {VISA} please", "sku": 12}},
        ],
        "card": int(MASTERCARD),
        "nested": {"deeper": [["x", "4111-1111-1111-1111"]]},
        "flag": True,
        "nothing": None,
        "ratio": 0.5,
    }
    assert list(find_pan_paths(payload)) == [
        "items[2].attributes.note",
        "card",
        "nested.deeper[0][1]",
    ]


def test_find_pan_paths_reports_keys_holding_a_pan() -> None:
    # A card number used as a key is reported, but masked: an error never echoes the PAN.
    assert list(find_pan_paths({"attributes": {VISA: "x"}})) == ["attributes.[card number]"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VISA, ["(value)"]),
        (int(VISA), ["(value)"]),
        ([VISA], ["[0]"]),
        ((AMEX, "x"), ["[0]"]),
        ("clean", []),
        (True, []),
        (None, []),
        ({}, []),
        ([], []),
    ],
)
def test_find_pan_paths_on_scalars_and_top_level_sequences(value: object, expected: list[str]) -> None:
    assert list(find_pan_paths(value)) == expected


def test_find_pan_paths_finds_nothing_in_clean_data() -> None:
    payload = {
        "identifiers": {"phone": "+380671234567", "account": "UA213223130000026007233566001"},
        "occurred_at": "2026-11-20T12:00:00+02:00",
        "attributes": {"contract_number": "DEP-2026-000123", "amount": 1234567.89},
    }
    assert list(find_pan_paths(payload)) == []


# ------------------------------------------------------------------ written forms (a PCI scan's table)

# Every way a scan writes the same card numbers: the guard normalises (NFKC, separators) first.
PAN_WRITTEN_FORMS = {
    "plain": "4111111111111111",
    "spaces": "4111 1111 1111 1111",
    "double spaces": "4111  1111  1111  1111",
    "no-break spaces": "4111\u00a01111\u00a01111\u00a01111",
    "narrow no-break spaces": "4111\u202f1111\u202f1111\u202f1111",
    "ideographic spaces": "4111\u30001111\u30001111\u30001111",
    "dashes": "4111-1111-1111-1111",
    "spaced dashes": "4111 - 1111 - 1111 - 1111",
    "en dashes": "4111\u20131111\u20131111\u20131111",
    "dots": "4111.1111.1111.1111",
    "slashes": "4111/1111/1111/1111",
    "underscores": "4111_1111_1111_1111",
    "zero-width spaces": "4111\u200b1111\u200b1111\u200b1111",
    "soft hyphens": "4111\u00ad1111\u00ad1111\u00ad1111",
    "full-width digits": "４１１１１１１１１１１１１１１１",
    "full-width digits and spaces": "４１１１\u3000１１１１\u3000１１１１\u3000１１１１",
    "full-width dots": "４１１１．１１１１．１１１１．１１１１",
    "arabic-indic digits": "٤١١١١١١١١١١١١١١١",
    "mixed separators": "4111.1111-1111 1111",
    "mixed digits": "4111 １１１１ 1111 1111",
    "amex with dots": "3782.822463.10005",
    "mastercard with slashes": "5555/5555/5555/4444",
    "inside longer text": "please charge 4111.1111.1111.1111 today",
    "inside cyrillic text": "картка 5555\u00a05555\u00a05555\u00a04444 клієнта",
    "next to a CVV": "4111_1111_1111_1111 123",
    "glued to letters": "card4111.1111.1111.1111exp",
}


@pytest.mark.parametrize("text", PAN_WRITTEN_FORMS.values(), ids=PAN_WRITTEN_FORMS.keys())
def test_every_written_form_of_a_card_number_is_detected(text: str) -> None:
    assert contains_pan(text)


@pytest.mark.parametrize("text", PAN_WRITTEN_FORMS.values(), ids=PAN_WRITTEN_FORMS.keys())
def test_every_written_form_is_found_in_data_and_masked_in_keys(text: str) -> None:
    assert list(find_pan_paths({"first_name": text})) == ["first_name"]
    masked = mask(text)
    assert "[card number]" in masked
    assert re.search(r"\d{4}", masked) is None, masked


NOT_CARD_NUMBERS = {
    "iban compact": "UA213223130000026007233566001",
    "iban printed": "UA21 3223 1300 0002 6007 2335 6600 1",
    "iban with dots": "UA21.3223.1300.0002.6007.2335.6600.1",
    "iban with no-break spaces": "UA21\u00a03223\u00a01300\u00a00002\u00a06007\u00a02335\u00a06600\u00a01",
    "phone international": "+380 67 123 45 67",
    "phone dotted": "067.123.45.67",
    "phone slashed": "067/123/45/67",
    "phone full-width": "＋３８０６７１２３４５６７",
    "two phones": "+380671234567 / +380501234567",
    "date dotted": "20.11.2026",
    "date slashed": "2026/11/20",
    "timestamp": "2026-11-20 12:00:00.123456",
    "12 digits dotted": "4111.1111.1111",
    "12 digits full-width": "４１１１１１１１１１１１",
    "20-digit run": "41111111111111111111",
    "20-digit run full-width": "４１１１１１１１１１１１１１１１１１１１",
    "luhn-invalid 16 dotted": "4111.1111.1111.1112",
    "luhn-invalid 16 nbsp": "4111\u00a01111\u00a01111\u00a01112",
    "luhn-valid without a scheme prefix": "1111.1111.1111.1117",
    "decimal number": "3456.7890123456789",
    "digits split by letters": "4111a1111b1111c1111",
    "digits on separate lines": "4111\n1111\n1111\n1111",
    "contract number": "DEP-2026-000123",
}


@pytest.mark.parametrize("text", NOT_CARD_NUMBERS.values(), ids=NOT_CARD_NUMBERS.keys())
def test_numbers_that_are_not_card_numbers_are_accepted(text: str) -> None:
    assert not contains_pan(text)


@pytest.mark.parametrize(
    "body",
    [
        b'{"first_name": "\\u0034111111111111111"}',
        b'{"first_name": "4111\\u00a01111\\u00a01111\\u00a01111"}',
        b'{"first_name": "\\uff14\\uff11\\uff11\\uff11\\uff11\\uff11\\uff11\\uff11'
        b'\\uff11\\uff11\\uff11\\uff11\\uff11\\uff11\\uff11\\uff11"}',
        b'{"first_name": "4111\\/1111\\/1111\\/1111"}',
        b'{"first_name": "4111.1111.1111.1111"}',
        '{"first_name": "4111\u00a01111\u00a01111\u00a01111"}'.encode(),
    ],
)
def test_the_guard_sees_escaped_and_raw_forms_in_a_body(body: bytes) -> None:
    assert holds_pan(body)


def test_the_guard_passes_an_ordinary_body() -> None:
    body = '{"first_name": "Олена", "phone": "+380 67 123 45 67", "amount": 1234.5}'.encode()
    assert not holds_pan(body)
