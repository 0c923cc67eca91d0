"""How an SMS text travels: GSM-7 when every character is in GSM 03.38, UCS-2 otherwise, and
the parts a long text is split into. Pure functions, no I/O.

Why it matters: a bank pays per segment, and a single Cyrillic letter turns a 160-character
GSM-7 message into three 67-unit UCS-2 parts. Counting here (the same way the SMSC does) lets
dispatch record the real cost and lets templates be checked before they go out.

Rules (3GPP TS 23.038 / 23.040):
- GSM-7: the basic set costs 1 septet, the extension table (`€ { } [ ] ~ \\ | ^` and form feed)
  2 septets (escape + char). One SMS carries 160 septets; a concatenated part 153 (the 6-octet
  UDH eats 7 septets). An escape sequence is never split across parts.
- UCS-2: counted in UTF-16 code units. One SMS carries 70; a concatenated part 67. A surrogate
  pair (emoji, rare CJK) is never split across parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Coding = Literal["gsm7", "ucs2"]

# GSM 03.38 default alphabet (one septet each); 0x1B (escape) is left out on purpose.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The default extension table: each costs two septets (ESC + the character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67


@dataclass(frozen=True, slots=True)
class Segmented:
    """A text as the SMSC will send it: its coding and the text of each part, in order."""

    coding: Coding
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM-7 basic set or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def coding_of(text: str) -> Coding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def unit_cost(ch: str, coding: Coding) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) one character takes."""
    if coding == "gsm7":
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def length(text: str, coding: Coding | None = None) -> int:
    """The length of `text` in its coding's units (septets or UTF-16 code units)."""
    chosen = coding or coding_of(text)
    return sum(unit_cost(ch, chosen) for ch in text)


def segments(text: str) -> Segmented:
    """Choose the coding and split `text` into the parts an SMSC sends.

    Characters are whole Python code points, so a character that costs two units (an escape
    sequence, a surrogate pair) always lands in one part; a part may then hold one unit less."""
    coding = coding_of(text)
    single, part = (GSM7_SINGLE, GSM7_PART) if coding == "gsm7" else (UCS2_SINGLE, UCS2_PART)
    if length(text, coding) <= single:
        return Segmented(coding, (text,))
    parts: list[str] = []
    start, used = 0, 0
    for index, ch in enumerate(text):
        cost = unit_cost(ch, coding)
        if used + cost > part:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return Segmented(coding, tuple(parts))


# GSM 03.38 code points in table order: the basic set (0x1B is the escape) and the extension
# table's filled positions. SMPP carries GSM-7 unpacked, one septet per octet.
_GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT_CODES = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E}
_GSM7_EXT_CODES |= {"|": 0x40, "€": 0x65}
_GSM7_INDEX = {ch: i for i, ch in enumerate(_GSM7_TABLE) if ch != "\x1b"}
_GSM7_EXT_CHARS = {code: ch for ch, code in _GSM7_EXT_CODES.items()}


def gsm7_encode(text: str) -> bytes:
    """`text` as unpacked GSM 03.38 septets; raises ValueError for a character outside it."""
    out = bytearray()
    for ch in text:
        if ch in _GSM7_INDEX:
            out.append(_GSM7_INDEX[ch])
        elif ch in _GSM7_EXT_CODES:
            out += bytes((0x1B, _GSM7_EXT_CODES[ch]))
        else:
            raise ValueError(f"U+{ord(ch):04X} is not in the GSM 03.38 alphabet")
    return bytes(out)


def gsm7_decode(data: bytes) -> str:
    """Unpacked GSM 03.38 septets as text (an unknown escape yields a space, as 23.038 says)."""
    out: list[str] = []
    escaped = False
    for byte in data:
        if escaped:
            out.append(_GSM7_EXT_CHARS.get(byte, " "))
            escaped = False
        elif byte == 0x1B:
            escaped = True
        else:
            out.append(_GSM7_TABLE[byte & 0x7F])
    return "".join(out)
