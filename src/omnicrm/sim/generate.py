"""A seeded synthetic data set structured like the paper's: customers, events and CRM interactions.

Everything comes from one `random.Random(seed)` and the given `start`, so the same arguments give
byte-identical files. Customers are generated first; events and interactions then only refer to
identifiers and contract numbers that the customers really have.

The parts: `world` (the generator, people, weighted choices), `customers` and `products` (the
customer records), `episodes` (what events are built from), `events` and `operations` (behavioural
and core-banking events), `interactions` (CRM). This module puts them together and writes the files.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path

import orjson

from omnicrm.sim.customers import new_customer
from omnicrm.sim.episodes import Episode, Pools, build_pools
from omnicrm.sim.events import EVENT_EPISODES
from omnicrm.sim.interactions import INTERACTION_EPISODES
from omnicrm.sim.world import Record, Table, World


@dataclass(frozen=True)
class DatasetSize:
    """How many customers, events and interactions to generate."""

    customers: int = 18_000
    events: int = 126_000
    interactions: int = 31_500


@dataclass(frozen=True)
class Dataset:
    """The generated records, as plain JSON-ready dicts in file order."""

    customers: list[Record]
    events: list[Record]
    interactions: list[Record]


def _fill(w: World, p: Pools, episodes: Table[Episode], total: int) -> list[Record]:
    """Draw episodes until there are `total` records; the last episode may be cut short."""
    out: list[Record] = []
    while len(out) < total:
        out.extend(episodes.pick(w.rng)(w, p))
    del out[total:]
    return out


def _finish(w: World, records: list[Record], prefix: str, late_share: float) -> list[Record]:
    """Order records by arrival (a few arrive late), number them and render the timestamps."""
    keyed = []
    for index, record in enumerate(records):
        arrival: dt.datetime = record["occurred_at"]
        if late_share and w.rng.random() < late_share:
            arrival += dt.timedelta(minutes=w.rng.randint(5, 48 * 60))
        keyed.append((arrival, index, record))
    keyed.sort(key=lambda item: (item[0], item[1]))
    for number, (_, _, record) in enumerate(keyed, 1):
        record["event_id"] = f"{prefix}-{number:07d}"
        record["occurred_at"] = record["occurred_at"].isoformat()
    return [record for _, _, record in keyed]


def generate(
    *, seed: int = 42, size: DatasetSize = DatasetSize(), start: dt.datetime, days: int = 90
) -> Dataset:
    """Generate the data set; the same seed, size, start and days always give the same records."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    if days < 1 or min(size.customers, size.events, size.interactions) < 0:
        raise ValueError("days must be positive and sizes not negative")
    if size.customers < 1 and (size.events or size.interactions):
        raise ValueError("events and interactions need at least one customer")
    w = World(random.Random(seed), start.astimezone(dt.UTC), days)
    customers = [new_customer(w, index == 0 or w.rng.random() < 0.6) for index in range(size.customers)]
    pools = build_pools(w)
    events = _finish(w, _fill(w, pools, EVENT_EPISODES, size.events), "ev", 0.03)
    interactions = _finish(w, _fill(w, pools, INTERACTION_EPISODES, size.interactions), "ix", 0.0)
    return Dataset(customers, events, interactions)


def write_dataset(dataset: Dataset, directory: Path) -> dict[str, Path]:
    """Write customers.jsonl, events.jsonl and interactions.jsonl (one JSON object a line)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, records in (
        ("customers", dataset.customers),
        ("events", dataset.events),
        ("interactions", dataset.interactions),
    ):
        path = directory / f"{name}.jsonl"
        path.write_bytes(
            b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in records)
        )
        paths[name] = path
    return paths
