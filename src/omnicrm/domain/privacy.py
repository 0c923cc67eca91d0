"""Data subjects' rights: what erasure keeps, and the keyed pseudonyms left as tombstones.

An erased identifier is kept only as HMAC-SHA256(key, kind + value): the intake can still tell that a
stale event or profile names an erased person, but nobody holding the database alone can turn the
digest back into the phone number or e-mail address (a plain hash of a phone number is reversed by
trying every number). The key comes from the settings (OMNICRM_PSEUDONYM_KEY); `bootstrap` installs
it for the process before any request is served.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

from omnicrm.domain.errors import InvalidInput, ItemError

# Development and test only: settings refuse it when OMNICRM_ENV=production.
DEV_PSEUDONYM_KEY: Final = "omnicrm-development-pseudonym-key-never-use-in-production"
ERASED: Final = "erased"  # the status of an erased profile
OUTCOME: Final = "cancelled_by_erasure"  # conversations ended and messages withdrawn by an erasure
REQUESTED: Final = "requested"
EXECUTED: Final = "executed"

# The profile columns erased, and what they become. Kept: the id, status (set to erased), branch and
# value tier (the bank's own labels), the times and version - so counts and metrics still add up.
ERASED_PROFILE: Final[dict[str, Any]] = {
    "status": ERASED,
    "first_name": None,
    "middle_name": None,
    "last_name": None,
    "date_of_birth": None,
    "language": None,
    "timezone": None,
    "relationship_manager": None,
    "preferred_channel": None,
    "contact_window_start": None,
    "contact_window_end": None,
    "do_not_contact": True,
    "vulnerable": False,
    "fraud_case_open": False,
    "open_complaints": 0,
    "channel_blacklist": [],
}

_key: list[bytes] = [DEV_PSEUDONYM_KEY.encode()]


class ErasedSubject(InvalidInput):
    """Input names a person whose data was erased: it would bring them back, so it is refused."""

    code = "erased_subject"
    title = "The person's data was erased"

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(
            "these items name a person whose data was erased (GDPR Art. 17); nothing was written",
            errors,
        )


def use_pseudonym_key(key: str) -> None:
    """Install the process's pseudonym key (from the settings); every digest is computed with it."""
    _key[0] = key.encode()


def pseudonym(kind: str, value: str) -> str:
    """The keyed digest of a normalised identifier: the tombstone an erasure leaves."""
    message = f"{kind}\x00{value}".encode()
    return hmac.new(_key[0], message, hashlib.sha256).hexdigest()
