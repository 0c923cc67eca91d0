"""Detection of payment card numbers (PAN) in free input, so that none is ever stored.

A candidate is a run of 13-19 digits, optionally grouped by single spaces or dashes, not part of
a longer digit run (so IBANs and long contract numbers pass), that starts with an issuer prefix of
a card scheme and passes the Luhn check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_CANDIDATE = re.compile(r"(?<![0-9])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")
_PREFILTER = re.compile(r"[0-9]{4}")
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


def contains_pan(text: str) -> bool:
    """True when `text` holds something that looks like a real card number."""
    if not _PREFILTER.search(text):
        return False
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and _SCHEME_PREFIX.match(digits) and luhn_valid(digits):
            return True
    return False


def find_pan_paths(value: object, path: str = "") -> Iterator[str]:
    """Yield the dotted path of every string or number inside `value` that holds a PAN."""
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
            child = f"{path}.{key}" if path else str(key)
            if contains_pan(str(key)):
                yield child
            yield from find_pan_paths(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from find_pan_paths(item, f"{path}[{index}]")
