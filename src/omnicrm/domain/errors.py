"""Domain errors: small classes with a stable code; the API maps them to problem+json."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ItemError:
    """One reason an input was refused: which item (in a batch), which field, why."""

    index: int | None
    field: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


class DomainError(Exception):
    """Base of every business error; `code` is stable and machine-readable."""

    code = "domain_error"
    title = "The request could not be processed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    """Input broke a rule; `errors` lists every problem found, not only the first."""

    code = "invalid_input"
    title = "Invalid input"

    def __init__(self, detail: str, errors: list[ItemError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class CardNumberRefused(InvalidInput):
    """A payment card number (PAN) appeared in input; omnicrm never stores one."""

    code = "card_number_refused"
    title = "Card numbers are not accepted"


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class Unavailable(DomainError):
    """The service cannot take the request now (the database's disk is full): nothing was stored,
    and the same request may succeed after `retry_after` seconds."""

    code = "storage_full"
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 30) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
