"""What every part of the generator shares: the seeded world, its people and weighted choices.

`World` holds the one `random.Random` and the time window; every draw goes through it, in the order
the caller makes them, so the output depends only on the seed, the sizes, `start` and `days`.
"""

from __future__ import annotations

import datetime as dt
import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from omnicrm.domain.pan import contains_pan
from omnicrm.sim import names

Record = dict[str, Any]
T = TypeVar("T")
DAY = 86_400
_KYIV = ZoneInfo("Europe/Kyiv")


class Table(Generic[T]):
    """A weighted choice, drawn with one call of the generator."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.values = [value for value, _ in pairs]
        self.cum = list(accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> T:
        """One value, drawn by weight."""
        return self.values[bisect_left(self.cum, rng.random() * self.cum[-1])]


@dataclass(slots=True)
class Product:
    """What events need to know about a product after its record is written."""

    product_class: str
    contract: str
    state: str
    amount: float
    terms: dict[str, Any]
    maturity: dt.date | None = None


@dataclass(slots=True)
class Person:
    """A generated customer as events and interactions see them: who, which identifiers and products."""

    client: bool
    female: bool
    surname: tuple[str, str]
    branch: str | None
    language: str
    ids: dict[str, str] = field(default_factory=dict)
    products: list[Product] = field(default_factory=list)


@dataclass
class World:
    """The generator's state: the random source, the time window, the people so far, values in use."""

    rng: random.Random
    start: dt.datetime
    days: int
    people: list[Person] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    seq: int = 0
    kyiv_offset: int = 0
    start_of_day: int = 0

    def __post_init__(self) -> None:
        offset = self.start.astimezone(_KYIV).utcoffset() or dt.timedelta()
        self.kyiv_offset = int(offset.total_seconds())
        self.start_of_day = self.start.hour * 3600 + self.start.minute * 60 + self.start.second

    @property
    def today(self) -> dt.date:
        return self.start.date()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def unique(self, kind: str, make: Callable[[], str]) -> str:
        """A value from `make` that was never drawn before for `kind` and holds no card number."""
        while True:
            value = make()
            key = f"{kind}:{value}"
            if key not in self.used and not contains_pan(value):
                self.used.add(key)
                return value

    def token(self, kind: str, prefix: str) -> str:
        return self.unique(kind, lambda: f"{prefix}{self.rng.getrandbits(64):016x}")

    def at(self, seconds: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=int(seconds))

    def moment(self, day: int | None = None) -> dt.datetime:
        """A random instant of the window (or of its `day`), busier in Kyiv's daytime than at night."""
        local = _HOURS.pick(self.rng) * 3600 + self.rng.randrange(3600)
        into_day = (local - self.kyiv_offset - self.start_of_day) % DAY
        return self.at((self.rng.randrange(self.days) if day is None else day) * DAY + into_day)


_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 12, 11, 11, 11, 11, 11, 11, 12, 12, 11, 9, 6, 3)
_HOURS = Table(list(enumerate(_HOUR_WEIGHTS)))
# Shared by customers (their home branch) and CRM branch visits.
BRANCHES = Table(names.BRANCHES)
