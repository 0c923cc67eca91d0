"""Detection of payment card numbers (PAN) in free input, so that none is ever stored.

Digits are read as runs of groups joined by single spaces or dashes ("4111 1111 1111 1111",
"4111111111111111 123"). Every window of whole groups holding 13-19 digits is a candidate (groups of
a multi-group window have at least 3 digits, so dates and times do not combine into one); a
candidate is a PAN when it starts with a card scheme's prefix and passes the Luhn check. Valid
IBANs, in compact or printed form, are set aside first, and a single run of more than 19 digits
(an account number) is not a card number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from omnicrm.domain.identifiers import iban_valid

# 13 digits joined by single separators need 13 characters of digits, spaces and dashes in a row;
# this simple class run is much cheaper to search for than the exact pattern.
_PREFILTER = re.compile(r"[0-9][0-9 -]{12}")
_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_LONG_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12,}")
_IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
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


def _without_ibans(text: str) -> str:
    return _IBAN.sub(lambda m: " " if iban_valid(m.group().replace(" ", "").upper()) else m.group(), text)


def _run_has_card(run: str) -> bool:
    groups = re.split(r"[ -]", run)
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            if last > first and (len(groups[last]) < 3 or len(groups[first]) < 3):
                break
            digits += groups[last]
            if len(digits) > 19:
                break
            if _is_card(digits):
                return True
    return False


def contains_pan(text: str) -> bool:
    """True when `text` holds something that looks like a real card number."""
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
