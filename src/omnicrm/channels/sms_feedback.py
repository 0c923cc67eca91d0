"""What comes back from an SMS gateway, in omnicrm's words: delivery receipts and inbound texts.

Gateways speak their own dialects (Kannel's DLR types, SMPP receipt text); their adapters parse
those into the two values here, so feedback handling (services/feedback) sees one shape. An
inbound text that is a STOP word is the client's consent withdrawal for SMS (issue 18).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ReceiptStatus = Literal["sent", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """The gateway's word about one message. `key` is the outbox idempotency key when the gateway
    echoes it (Kannel's dlr-url); otherwise (SMPP) `provider_id`, the id the gateway gave at
    submit, which dispatch recorded as the outbox row's provider_id. `provider_event_id` is stable
    across the gateway's retries of the same receipt, so the feedback inbox stores it once."""

    key: str | None
    status: ReceiptStatus
    provider_event_id: str
    at: datetime
    reason: str | None = None  # the SMSC's answer, e.g. "UNDELIV" or an error code
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """A text a client sent to the bank (MO). `msisdn` is as the gateway gave it (normalise it
    before looking the client up); `provider_event_id` dedups the gateway's retries."""

    msisdn: str
    text: str
    provider_event_id: str
    to: str | None = None
    at: datetime | None = None


# Whole-message opt-out words, compared after trimming spaces and punctuation and ignoring case.
# Only a message that *is* the word counts ("stop" yes, "don't stop my card" no), as SMS
# regulators (CTIA, Ofcom) read opt-out keywords; the list is data so compliance can extend it.
STOP_WORDS: frozenset[str] = frozenset(
    {
        "stop",  # the international keyword
        "stopall",
        "unsubscribe",
        "стоп",  # Ukrainian and Russian
        "відписатися",  # "unsubscribe" in Ukrainian
        "відписка",
    }
)

# Latin letters that look like Cyrillic ones: clients type "CTOП" or "cтоп" on mixed keyboards.
_LOOKALIKES = str.maketrans("aceikmhoptxy", "асеікмнортху")
_TRIM = string.whitespace + string.punctuation + "«»“”„…–—¡¿"


def normalise_keyword(text: str) -> str:
    """The text as one comparable keyword: trimmed, case-folded, inner spaces removed."""
    return "".join(text.strip(_TRIM).casefold().split())


def is_stop(text: str) -> bool:
    """True when an inbound SMS is an opt-out: STOP, СТОП, stop, UNSUBSCRIBE, ВІДПИСАТИСЯ... in any
    case, with surrounding spaces or punctuation ("Stop!", " стоп. ")."""
    word = normalise_keyword(text)
    if word in STOP_WORDS:
        return True
    has_cyrillic = any("\u0400" <= ch <= "\u04ff" for ch in word)
    return has_cyrillic and word.translate(_LOOKALIKES) in STOP_WORDS
