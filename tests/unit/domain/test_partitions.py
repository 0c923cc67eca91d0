"""Partitions of customers: each customer in exactly one partition of a count, slots split evenly."""

from __future__ import annotations

import pytest

from omnicrm.domain.partitions import COUNTS, SLOTS, Partition, slot_of

IDS = [f"01JCUSTOMER{n:015d}" for n in range(2000)]


@pytest.mark.parametrize("count", COUNTS)
def test_every_customer_belongs_to_exactly_one_partition(count: int) -> None:
    partitions = [Partition(i, count) for i in range(count)]
    for customer_id in IDS:
        assert sum(p.owns(customer_id) for p in partitions) == 1


@pytest.mark.parametrize("count", COUNTS)
def test_a_partition_owns_its_slots_and_only_them(count: int) -> None:
    partitions = [Partition(i, count) for i in range(count)]
    assert sorted(s for p in partitions for s in p.slots) == list(range(SLOTS))
    for customer_id in IDS[:200]:
        owner = next(p for p in partitions if p.owns(customer_id))
        assert slot_of(customer_id) in owner.slots


def test_customers_spread_over_the_slots() -> None:
    per_slot = [0] * SLOTS
    for customer_id in IDS:
        per_slot[slot_of(customer_id)] += 1
    assert min(per_slot) > len(IDS) / SLOTS / 2


@pytest.mark.parametrize(("index", "count"), [(0, 3), (2, 2), (-1, 2), (0, 0)])
def test_impossible_partitions_are_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="partition"):
        Partition(index, count)


def test_the_whole_is_one_partition() -> None:
    assert Partition().whole
    assert Partition().name == "all"
    assert Partition(1, 4).name == "1of4"
    assert not Partition(1, 4).whole
