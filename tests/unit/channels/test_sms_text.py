"""SMS coding and segments: the counts a bank is billed for, table-driven plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicrm.channels.sms_text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    GSM7_PART,
    UCS2_PART,
    gsm7_decode,
    gsm7_encode,
    is_gsm7,
    length,
    segments,
)

UKRAINIAN_71 = "Шановний клієнте, ваша картка готова. Заберіть її у відділенні банку!!!"
EMOJI = "\U0001f600"


def test_the_ukrainian_fixture_is_71_characters() -> None:
    assert len(UKRAINIAN_71) == 71


@pytest.mark.parametrize(
    ("text", "coding", "count"),
    [
        ("", "gsm7", 1),
        ("Hello", "gsm7", 1),
        ("a" * 160, "gsm7", 1),
        ("a" * 161, "gsm7", 2),
        ("a" * 306, "gsm7", 2),
        ("a" * 307, "gsm7", 3),
        ("€" * 80, "gsm7", 1),  # 160 septets
        ("€" * 80 + "a", "gsm7", 2),  # 162 septets
        ("{" * 81, "gsm7", 2),
        ("a" * 159 + "{", "gsm7", 2),  # 161 septets: the brace counts two
        (UKRAINIAN_71[:70], "ucs2", 1),
        (UKRAINIAN_71, "ucs2", 2),
        ("я" * 134, "ucs2", 2),
        ("я" * 135, "ucs2", 3),
        ("a" * 69 + EMOJI, "ucs2", 2),  # 71 UTF-16 units
        ("a" * 68 + EMOJI, "ucs2", 1),  # 70 units
        ("Price 100 ₴", "ucs2", 1),  # the hryvnia sign is not GSM-7
        ("ÄÖÑÜ§¿äöñüà@£$¥", "gsm7", 1),
    ],
)
def test_coding_and_count(text: str, coding: str, count: int) -> None:
    result = segments(text)
    assert (result.coding, result.count) == (coding, count)
    assert "".join(result.parts) == text


@pytest.mark.parametrize(
    ("text", "units"),
    [("abc", 3), ("€", 2), ("{}[]~\\|^\f", 18), ("Ї", 1), (EMOJI, 2), ("a" + EMOJI, 3)],
)
def test_length_counts_septets_or_utf16_units(text: str, units: int) -> None:
    assert length(text) == units


def test_an_escape_sequence_is_never_split() -> None:
    text = "a" * 152 + "€" + "b" * 10  # the euro would straddle septets 153-154
    parts = segments(text).parts
    assert parts[0] == "a" * 152
    assert parts[1].startswith("€")


def test_a_surrogate_pair_is_never_split() -> None:
    text = "ж" * 66 + EMOJI + "ж" * 10  # the emoji would straddle units 67-68
    parts = segments(text).parts
    assert parts[0] == "ж" * 66
    assert parts[1].startswith(EMOJI)


GSM_CHARS = st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION))
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=400)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=GSM_CHARS, max_size=500))
def test_gsm7_parts_fit_and_rejoin(text: str) -> None:
    result = segments(text)
    assert result.coding == "gsm7"
    assert "".join(result.parts) == text
    if result.count > 1:
        assert all(0 < length(p, "gsm7") <= GSM7_PART for p in result.parts)
        assert length(text, "gsm7") > 160


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
def test_any_text_parts_fit_and_rejoin(text: str) -> None:
    result = segments(text)
    assert "".join(result.parts) == text
    assert result.coding == ("gsm7" if is_gsm7(text) else "ucs2")
    limit = GSM7_PART if result.coding == "gsm7" else UCS2_PART
    if result.count > 1:
        assert all(0 < length(p, result.coding) <= limit for p in result.parts)
        # greedy: a part is never closed while the next character would still fit
        for part, following in zip(result.parts, result.parts[1:], strict=False):
            assert length(part + following[0], result.coding) > limit


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=GSM_CHARS, max_size=200))
def test_gsm7_encoding_round_trips_and_costs_its_length(text: str) -> None:
    encoded = gsm7_encode(text)
    assert gsm7_decode(encoded) == text
    assert len(encoded) == length(text, "gsm7")
    assert all(b < 0x80 for b in encoded)


@pytest.mark.parametrize(("text", "octets"), [("@", b"\x00"), ("A€", b"\x41\x1b\x65"), ("§¿", b"\x5f\x60")])
def test_gsm7_code_points(text: str, octets: bytes) -> None:
    assert gsm7_encode(text) == octets


def test_gsm7_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="GSM"):
        gsm7_encode("Ї")
