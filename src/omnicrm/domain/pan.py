"""Detection of payment card numbers (PAN) in free input, so that none is ever stored.

The text is normalised first, as a PCI scan writes the same number in many forms: Unicode NFKC
(full-width digits and spaces become ASCII), every other decimal digit (Arabic-Indic...) becomes its
ASCII digit, and no-break, zero-width and typographic spaces, soft hyphens and dashes become spaces.
Digits are then read as runs of groups joined by separators: any run of spaces, `-`, `.`, `/` and `_`
("4111 1111 1111 1111", "4111.1111.1111.1111", "4111 - 1111 - 1111 - 1111"), never letters, line
breaks or JSON punctuation. Every window of whole groups holding 13-19 digits is a candidate
(groups of a multi-group window have at least 3 digits, so dates and times do not combine into one,
and two groups joined by a lone `.` are a decimal number); a candidate is a PAN when it starts with
a card scheme's prefix and passes the Luhn check. Valid IBANs, in compact or printed form, are set
aside first, and a single run of more than 19 digits (an account number) is not a card number.

Cost: ASCII text (most bodies) skips the Unicode steps; a cheap pre-filter (13 characters of digits
and separators in a row) answers almost every ordinary text before the exact search.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from omnicrm.domain.identifiers import iban_valid

_SEPARATORS = r" \-./_"
# Non-ASCII characters that separate digit groups (NFKC maps NBSP, U+3000 and the full-width
# punctuation to ASCII already; these it keeps): soft hyphen, middle dots, Unicode spaces that are
# not line breaks, zero-width characters and bidi marks, dashes, bullets, the minus sign.
_UNICODE_SEPARATOR = re.compile(
    "[\u00a0\u00ad\u00b7\u1680\u180e\u2000-\u200f\u2010-\u2015\u2022\u2027\u202a-\u202f"
    "\u2043\u205f-\u2064\u2212\u2219\u30fb\u3000\ufeff\uff65]"
)


def _non_ascii_digits() -> re.Pattern[str]:
    """A class of the BMP's non-ASCII decimal digits (Arabic-Indic, Devanagari...), which NFKC keeps
    (of the astral ones it maps the mathematical digits). Explicit ranges search much faster than
    a lookahead on `\\d`."""
    ranges: list[str] = []
    start = None
    for code in range(128, 0x10001):
        decimal = code < 0x10000 and chr(code).isdecimal()
        if decimal and start is None:
            start = code
        elif not decimal and start is not None:
            ranges.append(f"{chr(start)}-{chr(code - 1)}")
            start = None
    return re.compile(f"[{''.join(ranges)}]")


_NON_ASCII_DIGIT = _non_ascii_digits()
# 13 digits joined by separators need 13 characters of digits and separators in a row; this simple
# class run is much cheaper to search for than the exact pattern.
_PREFILTER = re.compile(f"[0-9][0-9{_SEPARATORS}]{{12}}")
_SEPARATOR_RUN = re.compile(f"[{_SEPARATORS}]+")
_RUN = re.compile(f"[0-9]+(?:[{_SEPARATORS}]+[0-9]+)*")
# mask() works on the text as given: any decimal digit, any separator seen above.
_LONG_RUN = re.compile(
    f"\\d(?:(?:[{_SEPARATORS}]|{_UNICODE_SEPARATOR.pattern}|[\uff0d\uff0e\uff0f\uff3f])*\\d){{12,}}"
)
_IBAN = re.compile(
    r"\b[A-Z]{2}[0-9]{2}(?:[ .\-/_]?[A-Z0-9]{4}){2,7}(?:[ .\-/_]?[A-Z0-9]{1,3})?\b", re.IGNORECASE
)
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
# Visa 4, Mastercard 2/5, Amex/Diners/JCB 3, Discover/UnionPay/Maestro 6, PROSTIR 9804.
_SCHEME_PREFIX = re.compile(r"^(?:[2-6]|9804)")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and _SCHEME_PREFIX.match(digits) is not None and luhn_valid(digits)


def _ascii_digit(match: re.Match[str]) -> str:
    return str(unicodedata.decimal(match.group()))


def normalise(text: str) -> str:
    """`text` as the detection reads it: NFKC, ASCII digits, Unicode separators as spaces."""
    if text.isascii():
        return text
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    text = _UNICODE_SEPARATOR.sub(" ", text)
    if _NON_ASCII_DIGIT.search(text) is None:
        return text
    return _NON_ASCII_DIGIT.sub(_ascii_digit, text)


# IBAN length per country (ISO 13616 registry): only a candidate of a registered country and its
# length is skipped as an IBAN, so letters around a card number cannot pass for one by mod 97 alone.
_IBAN_LENGTHS = {
    **dict.fromkeys(("NO",), 15),
    **dict.fromkeys(("BE",), 16),
    **dict.fromkeys(("DK", "FI", "FK", "FO", "GL", "NL", "SD"), 18),
    **dict.fromkeys(("MK", "SI"), 19),
    **dict.fromkeys(("AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK"), 20),
    **dict.fromkeys(("CH", "HR", "LI", "LV"), 21),
    **dict.fromkeys(("BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"), 22),
    **dict.fromkeys(("AE", "GI", "IL", "IQ", "OM", "SO", "TL"), 23),
    **dict.fromkeys(("AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"), 24),
    **dict.fromkeys(("LY", "PT", "ST"), 25),
    **dict.fromkeys(("IS", "TR"), 26),
    **dict.fromkeys(("BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM"), 27),
    **dict.fromkeys(("AL", "AZ", "BY", "CY", "DO", "GT", "HN", "HU", "LB", "NI", "PL", "SV"), 28),
    **dict.fromkeys(("BR", "EG", "PS", "QA", "UA"), 29),
    **dict.fromkeys(("JO", "KW", "MU", "YE"), 30),
    **dict.fromkeys(("MT", "SC"), 31),
    **dict.fromkeys(("LC",), 32),
    **dict.fromkeys(("RU",), 33),
}


def _is_iban(candidate: str) -> bool:
    compact = _NOT_ALNUM.sub("", candidate).upper()
    return _IBAN_LENGTHS.get(compact[:2]) == len(compact) and iban_valid(compact)


def _without_ibans(text: str) -> str:
    return _IBAN.sub(lambda m: " " if _is_iban(m.group()) else m.group(), text)


def _run_has_card(run: str) -> bool:
    groups = _SEPARATOR_RUN.split(run)
    joints = _SEPARATOR_RUN.findall(run)
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            if last > first and (len(groups[last]) < 3 or len(groups[first]) < 3):
                break
            digits += groups[last]
            if len(digits) > 19:
                break
            # two groups joined by a lone dot are a decimal number ("3456.7890123456789")
            decimal = last == first + 1 and joints[first] == "."
            if not decimal and _is_card(digits):
                return True
    return False


def contains_pan(text: str) -> bool:
    """True when `text` holds something that looks like a real card number, in any written form."""
    text = normalise(text)
    if not _PREFILTER.search(text):
        return False
    return any(len(m.group()) >= 13 and _run_has_card(m.group()) for m in _RUN.finditer(_without_ibans(text)))


def mask(text: str) -> str:
    """`text` with every run of 13 or more digits replaced, so an error message never echoes a PAN."""
    return _LONG_RUN.sub("[card number]", text)


def find_pan_paths(value: object, path: str = "") -> Iterator[str]:
    """Yield the dotted path (PANs in keys masked) of every string or number in `value` holding a PAN."""
    if isinstance(value, str):
        if contains_pan(value):
            yield path or "(value)"
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if contains_pan(str(value)):
            yield path or "(value)"
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{mask(str(key))}" if path else mask(str(key))
            if contains_pan(str(key)):
                yield child
            yield from find_pan_paths(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from find_pan_paths(item, f"{path}[{index}]")
