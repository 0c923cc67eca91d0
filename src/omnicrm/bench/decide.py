"""`omnicrm bench decide`: decision throughput over the data set, and event-to-decision latency."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from omnicrm.bench.copies import sqlite_copy
from omnicrm.bench.ingest import _pg_admin, _settings, bench_token
from omnicrm.bench.loadgen import post_json, run_load
from omnicrm.bench.server import serving
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.catchup import catch_up, default_processes
from omnicrm.services.conversations import decider
from omnicrm.services.intake.importer import import_customers, import_events
from omnicrm.services.intake.ingest import EVENT_KINDS, INTERACTION_KINDS
from omnicrm.settings import Settings
from omnicrm.sim.generate import DatasetSize, generate, write_dataset
from omnicrm.store import offsets
from omnicrm.store.tables import decisions, events

START = datetime(2026, 8, 1, tzinfo=UTC)  # the generated data set covers 90 days from here
# Every run decides at one moment: noon UTC (14:00 in Kyiv) the day after the data set ends. At the
# real clock the figures would depend on the hour (at night quiet hours turn contacts into delays).
DECIDED_AT = START + timedelta(days=90, hours=12)


def _import(container: Container, files: dict[str, Path]) -> None:
    import_customers(container.uow, files["customers"], actor="bench")
    import_events(container.uow, files["events"], container.catalogue, EVENT_KINDS, actor="bench")
    import_events(container.uow, files["interactions"], container.catalogue, INTERACTION_KINDS, actor="bench")


def _loaded(work: Path, files: dict[str, Path]) -> Path:
    """A SQLite database holding the whole data set, not yet decided on."""
    base = work / "base.db"
    container = bootstrap(_settings(f"sqlite:///{base}"), migrate=True)
    _import(container, files)
    container.close()
    return base


Result = tuple[int, int, float]  # events, decisions, seconds


def _drained(url: str, batch: int | None, processes: int) -> Result:
    """One catch-up of every queued event, at the default batch or `batch`, by `processes` processes
    (the time includes starting them)."""
    container = bootstrap(_settings(url))
    started = time.perf_counter()
    report = catch_up(container, processes=processes, limit=batch or decider.BATCH, now=DECIDED_AT)
    seconds = time.perf_counter() - started
    container.close()
    return report.events, report.decisions, seconds


def _throughput(base: Path, work: Path, run: int, batch: int | None, processes: int) -> Result:
    with sqlite_copy(base, work / f"decide{run}.db") as url:
        return _drained(url, batch, processes)


def _pg_throughput(
    files: dict[str, Path], runs: int, pg_url: str, batch: int | None, counts: list[int]
) -> dict[int, list[Result]]:
    """The same drain on PostgreSQL: the data set is loaded once, each run decides on a fresh copy."""
    admin = _pg_admin(pg_url)
    prefix = f"omnicrm_bench_decide_{os.getpid()}"  # two benches at once must not drop each other's
    names = [f"{prefix}_base", *(f"{prefix}_{i}" for i in range(runs))]

    def drop_all() -> None:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def url(name: str) -> str:
        return make_url(pg_url).set(database=name).render_as_string(hide_password=False)

    try:
        drop_all()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{names[0]}"'))
        container = bootstrap(_settings(url(names[0])), migrate=True)
        _import(container, files)
        container.close()
        results: dict[int, list[Result]] = {}
        for processes in counts:
            for name in names[1:]:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                    conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{names[0]}"'))
                results.setdefault(processes, []).append(_drained(url(name), batch, processes))
        return results
    finally:
        drop_all()
        admin.dispose()


def _report(console: Console, name: str, processes: int, results: list[Result]) -> None:
    rates = [n / s for n, _, s in results]
    console.print(
        f"decide ({name}, {processes} process{'es' if processes > 1 else ''}): {results[0][0]:,} events "
        f"(every scenario active) -> {results[0][1]:,} decisions; "
        f"median {statistics.median(rates):,.0f} events/s = "
        f"{statistics.median(d / s for _, d, s in results):,.0f} "
        f"decisions/s; {statistics.median(s for *_, s in results):.1f} s for all "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)} events/s)"
    )


def _warm_up(container: Container, port: int, token: str, template: dict[str, Any]) -> None:
    """Post one event and wait until the decision worker (a process of its own, starting beside the
    API) has handled it: the measurement is of the running service, not of its start."""
    body = {**template, "event_id": "warm-up", "occurred_at": datetime.now(UTC).isoformat()}
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}/v1/events"
    httpx.post(url, json=body, headers=headers, timeout=10).raise_for_status()
    with container.reader() as conn:
        pk = conn.execute(select(events.c.id).where(events.c.event_id == "warm-up")).scalar_one()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with container.reader() as conn:
            if offsets.offsets_of(conn, decider.CONSUMER).get(decider.CONSUMER, 0) >= pk:
                return
        time.sleep(0.1)
    raise RuntimeError("the decision worker did not handle an event within 60 s")


def _latency(
    base: Path, work: Path, seconds: float, rate: float, sample: list[dict[str, Any]], console: Console
) -> None:
    with sqlite_copy(base, work / "latency.db") as url:
        delays = _delays(url, seconds, rate, sample)
    if not delays:
        console.print("latency: no decisions were made for the posted events")
        return
    p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    console.print(
        f"event -> stored decision in the running service ({rate:,.0f} events/s posted, {len(delays):,} "
        f"decisions): p50 {p50:.1f} ms, p99 {p99:.1f} ms (received_at -> decided_at)"
    )


def _delays(url: str, seconds: float, rate: float, sample: list[dict[str, Any]]) -> list[float]:
    """Post `sample` events at `rate` for `seconds` to `serve` on `url`; each one's milliseconds from
    received to decided, sorted."""
    container = bootstrap(_settings(url))
    try:
        decider.drain(container.uow, container.library)  # start from a decided state
        token = bench_token(container)
        with serving(url, 1, decider_idle_ms="50") as port:
            _warm_up(container, port, token, sample[0])
            counter, templates = itertools.count(), itertools.cycle(sample)

            def make() -> bytes:
                body = {
                    **next(templates),
                    "event_id": f"lat-{next(counter)}",
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
                return post_json("/v1/events", "127.0.0.1", token, orjson.dumps(body))

            asyncio.run(run_load("127.0.0.1", port, make, concurrency=16, seconds=seconds, rate=rate))
            time.sleep(2)  # let the worker finish the last events
        with container.reader() as conn:
            query = (
                select(events.c.received_at, decisions.c.decided_at)
                .join(decisions, decisions.c.event_id == events.c.event_id)
                .where(events.c.event_id.like("lat-%"))
            )
            return sorted((d - r).total_seconds() * 1000 for r, d in conn.execute(query))
    finally:
        container.close()


def run(
    *,
    events: int,
    customers: int,
    interactions: int,
    runs: int,
    latency_seconds: float,
    rate: float,
    console: Console,
    batch: int | None = None,
    pg_url: str | None = None,
    processes: int = 0,
) -> None:
    """Print decisions/s with every scenario active (median of `runs`, on SQLite, then on PostgreSQL
    if it answers at `pg_url` or the configured bench URL) and event-to-decision latency. `batch`:
    events per drain transaction (default: the decision worker's). The catch-up runs in one process
    and in `processes` (0: as many as cores)."""
    dataset = generate(seed=42, size=DatasetSize(customers, events, interactions), start=START)
    with tempfile.TemporaryDirectory(prefix="omnicrm-bench-") as tmp:
        work = Path(tmp)
        files = write_dataset(dataset, work)
        kinds = ("application.abandoned", "tariff_page.visited")
        sample = [e for e in dataset.events if e["type"] in kinds][:500]
        # The generated data set (~0.5 GB of small objects) is on disk now: keeping it alive would
        # make every garbage-collector pass of the measured runs walk it, which is not the engine's cost.
        del dataset
        gc.collect()
        base = _loaded(work, files)
        counts = sorted({1, processes or default_processes()})
        for count in counts:
            results = [_throughput(base, work, run, batch, count) for run in range(runs)]
            _report(console, "SQLite", count, results)
        try:
            pg = _pg_throughput(files, runs, pg_url or Settings().pg_bench_url, batch, counts)
            for count in counts:
                _report(console, "PostgreSQL", count, pg[count])
        except Exception as exc:  # report and go on with the latency test
            console.print(f"decide (PostgreSQL) skipped: {exc}")
        _latency(base, work, latency_seconds, rate, sample, console)
