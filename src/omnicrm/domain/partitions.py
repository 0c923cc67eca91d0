"""Customers split into partitions the decision worker can handle in parallel processes.

Everything the engine decides is about one customer at a time (facts, caps, arbitration, the one
conversation per scenario), so customers in different partitions never interfere. A customer's
slot (one of `SLOTS`) is fixed by a hash of the customer id; a partition of `count` owns the slots
whose number leaves `index` when divided by `count`, so `count` divides `SLOTS`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

SLOTS = 16
COUNTS = (1, 2, 4, 8, 16)


def slot_of(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % SLOTS


@dataclass(frozen=True, slots=True)
class Partition:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count not in COUNTS:
            raise ValueError(f"partitions: {self.count} is not one of {', '.join(map(str, COUNTS))}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} does not exist among {self.count}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(s for s in range(SLOTS) if s % self.count == self.index)

    def owns(self, customer_id: str) -> bool:
        return self.count == 1 or slot_of(customer_id) % self.count == self.index

    @property
    def name(self) -> str:
        return "all" if self.whole else f"{self.index}of{self.count}"


WHOLE = Partition()
