"""`omnicrm bench ingest`: profile import and batch ingestion rates on SQLite and PostgreSQL, and REST
latency under load."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from omnicrm.bench.copies import remove, sqlite_copy
from omnicrm.bench.loadgen import LoadResult, post_json, run_load
from omnicrm.bench.server import serving
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.services.access import auth
from omnicrm.services.intake import ingest
from omnicrm.services.intake.importer import import_customers, import_events
from omnicrm.settings import Settings
from omnicrm.sim.generate import DatasetSize, generate, write_dataset

CHUNK = 1000
MINIMAL_PROFILES = 100_000  # profiles of one or two identifiers, as a core banking export gives them


def _settings(url: str) -> Settings:
    return Settings(database_url=url)


def _load_customers(container: Container, path: Path) -> None:
    import_customers(container.uow, path, actor="bench")


def write_minimal_profiles(path: Path, count: int) -> Path:
    """`count` profile lines of only an identifier or two (a core-banking id; every other one also a
    phone number), none shared: what a first load of a bank's clients looks like."""
    with path.open("wb") as out:
        for n in range(count):
            identifiers = [{"kind": "cbs_id", "value": f"CBS-M{n:08d}"}]
            if n % 2:
                identifiers.append({"kind": "phone", "value": f"+38067{2_000_000 + n % 8_000_000:07d}"})
            out.write(orjson.dumps({"identifiers": identifiers}) + b"\n")
    return path


def timed_profiles(container: Container, path: Path) -> float:
    """profiles/s of `omnicrm import customers` on the file: one transaction, validated in a second
    process (files of a megabyte or more)."""
    started = time.perf_counter()
    report = import_customers(container.uow, path, actor="bench")
    return report.accepted / (time.perf_counter() - started)


def _timed_ingest(container: Container, events: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds validating, seconds resolving + storing) for all events in 1,000-event transactions."""
    validating = storing = 0.0
    for start in range(0, len(events), CHUNK):
        t0 = time.perf_counter()
        prepared = ingest.prepare(events[start : start + CHUNK], container.catalogue, ingest.EVENT_KINDS)
        t1 = time.perf_counter()
        with container.uow() as uow:
            ingest.ingest(uow.conn, prepared, actor="bench", now=datetime.now(UTC))
            uow.commit()
        validating, storing = validating + t1 - t0, storing + time.perf_counter() - t1
    return validating, storing


def _timed_import(container: Container, path: Path) -> float:
    """events/s of `omnicrm import events` on the file: one transaction, validated in a second process."""
    started = time.perf_counter()
    report = import_events(container.uow, path, container.catalogue, ingest.EVENT_KINDS, actor="bench")
    return report.accepted / (time.perf_counter() - started)


def _rates(count: int, validating: float, storing: float) -> tuple[float, float, float]:
    """(end-to-end, validation only, identity + storage only) in events/s."""
    return count / (validating + storing), count / validating, count / storing


@dataclass
class Runs:
    batches: list[tuple[float, float, float]] = field(default_factory=list)  # 1,000-event transactions
    imports: list[float] = field(default_factory=list)  # `omnicrm import events`: events/s
    profiles: list[float] = field(default_factory=list)  # `omnicrm import customers`, the data set's
    minimal: list[float] = field(default_factory=list)  # ... of minimal profiles


def _runs(rates: list[float]) -> str:
    return ", ".join(f"{r:,.0f}" for r in rates)


def _report_profiles(console: Console, name: str, counts: tuple[int, int], runs: Runs) -> None:
    generated, minimal = statistics.median(runs.profiles), statistics.median(runs.minimal)
    console.print(
        f"{name} profile import (omnicrm import customers: one transaction, validation in a second "
        f"process), into an empty database: the data set's {counts[0]:,} profiles median "
        f"{generated:,.0f} profiles/s (runs: {_runs(runs.profiles)}); {counts[1]:,} minimal profiles "
        f"(one or two identifiers) median {minimal:,.0f} profiles/s (runs: {_runs(runs.minimal)}; "
        f"10 M would take {10_000_000 / minimal / 60:.0f} min)"
    )


def _report(console: Console, name: str, count: int, runs: Runs) -> None:
    batches, imports = runs.batches, runs.imports
    total, imported = statistics.median(r[0] for r in batches), statistics.median(imports)
    console.print(
        f"{name} batch ingest, 1,000-event transactions in one process (the API's batch shape): "
        f"median {total:,.0f} events/s end to end "
        f"(runs: {_runs([r[0] for r in batches])}; {count / total:.1f} s for the data set); "
        f"validation alone {statistics.median(r[1] for r in batches):,.0f}/s, "
        f"identity + storage + timeline alone {statistics.median(r[2] for r in batches):,.0f}/s"
    )
    console.print(
        f"{name} file import (omnicrm import events: one transaction, validation in a second process): "
        f"median {imported:,.0f} events/s (runs: {_runs(imports)}; "
        f"{count / imported:.1f} s for the data set)"
    )


def _pg_admin(url: str) -> Any:
    admin = make_url(url).set(database="postgres")
    return create_engine(admin, isolation_level="AUTOCOMMIT")


def _measured(
    fresh: Callable[[str, bool], AbstractContextManager[Container]],
    events: list[dict[str, Any]],
    files: dict[str, Path],
    runs: int,
) -> Runs:
    """Each run on fresh databases (`fresh(name, loaded)`): the profile files imported into empty
    ones; 1,000-event transactions on a copy of the loaded profiles, `omnicrm import events` of the
    file on another."""
    measured = Runs()
    for run in range(runs):
        with fresh(f"profiles{run}", False) as container:
            measured.profiles.append(timed_profiles(container, files["customers"]))
        with fresh(f"minimal{run}", False) as container:
            measured.minimal.append(timed_profiles(container, files["minimal"]))
        with fresh(f"batches{run}", True) as container:
            measured.batches.append(_rates(len(events), *_timed_ingest(container, events)))
        with fresh(f"import{run}", True) as container:
            measured.imports.append(_timed_import(container, files["events"]))
    return measured


def _sqlite_runs(events: list[dict[str, Any]], files: dict[str, Path], runs: int, work: Path) -> Runs:
    empty, base = work / "empty.db", work / "base.db"
    bootstrap(_settings(f"sqlite:///{empty}"), migrate=True).close()
    shutil.copy(empty, base)
    container = bootstrap(_settings(f"sqlite:///{base}"))
    _load_customers(container, files["customers"])
    container.close()

    @contextmanager
    def fresh(name: str, loaded: bool) -> Iterator[Container]:
        with sqlite_copy(base if loaded else empty, work / f"{name}.db") as url:
            container = bootstrap(_settings(url))
            try:
                yield container
            finally:
                container.close()

    return _measured(fresh, events, files, runs)


def _pg_runs(events: list[dict[str, Any]], files: dict[str, Path], runs: int, pg_url: str) -> Runs:
    """Ingest on PostgreSQL: profiles loaded once, each run on a fresh copy (of the empty database
    for the profile imports); every database this made is dropped at the end, even after a failure
    (named by process: two benches at once are fine)."""
    admin = _pg_admin(pg_url)
    prefix = f"omnicrm_bench_ingest_{os.getpid()}"
    empty, base, made = f"{prefix}_empty", f"{prefix}_base", list[str]()

    def url(name: str) -> str:
        return make_url(pg_url).set(database=name).render_as_string(hide_password=False)

    def drop(*dropped: str) -> None:
        with admin.connect() as conn:
            for name in dropped:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @contextmanager
    def fresh(name: str, loaded: bool) -> Iterator[Container]:
        made.append(f"{prefix}_{name}")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{made[-1]}" TEMPLATE "{base if loaded else empty}"'))
        container = bootstrap(_settings(url(made[-1])))
        try:
            yield container
        finally:
            container.close()
            drop(made[-1])

    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{empty}"'))
        bootstrap(_settings(url(empty)), migrate=True).close()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{base}" TEMPLATE "{empty}"'))
        container = bootstrap(_settings(url(base)))
        _load_customers(container, files["customers"])
        container.close()
        return _measured(fresh, events, files, runs)
    finally:
        drop(empty, base, *made)
        admin.dispose()


def bench_token(container: Container) -> str:
    """An hour-long token of a fresh `integration` user for the load generator."""
    with container.uow() as uow:
        now = datetime.now(UTC)
        auth.create_user(
            uow.conn, username="bench", role="integration", password=None, branch=None, actor="bench", now=now
        )
        token = auth.issue_token(
            uow.conn, username="bench", name="bench", ttl=timedelta(hours=1), actor="bench", now=now
        )
        uow.commit()
    return token


# The REST test runs twice: the API alone (decisions made by `omnicrm worker` elsewhere, as in a
# scaled deployment), then `omnicrm serve` as shipped, whose decision worker decides on every posted
# event on the same two cores as the API workers and this load generator.
_DEPLOYMENTS = (
    (False, "API only (decision worker elsewhere)"),
    (True, "API + decision worker on this machine"),
)


def _rest(
    events: list[dict[str, Any]], work: Path, seconds: float, concurrency: int, workers: int, console: Console
) -> None:
    for deciding, deployment in _DEPLOYMENTS:
        results = _rest_load(events, work / f"rest-{deciding}.db", seconds, concurrency, workers, deciding)
        for label, result in results:
            console.print(
                f"REST POST /v1/events, {deployment}, {concurrency} concurrent clients, {seconds:.0f} s, "
                f"SQLite, {workers} API worker(s), {label}: {result.rate:,.0f} requests/s, "
                f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms, "
                f"statuses {result.statuses}"
            )


def _rest_load(
    events: list[dict[str, Any]], db: Path, seconds: float, concurrency: int, workers: int, deciding: bool
) -> list[tuple[str, LoadResult]]:
    settings = _settings(f"sqlite:///{db}")
    container = bootstrap(settings, migrate=True)
    token = bench_token(container)
    container.close()
    try:
        with serving(settings.database_url, workers, decide_in_process=str(deciding).lower()) as port:
            counter = itertools.count()
            templates = itertools.cycle(events)

            def make() -> bytes:
                body = dict(next(templates))
                body["event_id"] = f"rest-{next(counter)}"
                return post_json("/v1/events", "127.0.0.1", token, orjson.dumps(body))

            asyncio.run(run_load("127.0.0.1", port, make, concurrency=concurrency, seconds=1.0))  # warm-up
            return [
                (
                    label,
                    asyncio.run(
                        run_load("127.0.0.1", port, make, concurrency=concurrency, seconds=seconds, rate=rate)
                    ),
                )
                for label, rate in (("as fast as answered", None), ("paced at 2,000 requests/s", 2000.0))
            ]
    finally:
        remove(db)  # not left to be written back during the next deployment's test


def run(
    *,
    events: int,
    customers: int,
    runs: int,
    pg_url: str,
    rest_seconds: float,
    concurrency: int,
    skip_rest: bool,
    workers: int,
    only_rest: bool,
    console: Console,
    minimal_profiles: int = MINIMAL_PROFILES,
) -> None:
    """Generate the data set, then measure and print; medians over `runs` fresh databases."""
    dataset = generate(
        seed=42, size=DatasetSize(customers, events, 0), start=datetime(2026, 8, 1, tzinfo=UTC)
    )
    with tempfile.TemporaryDirectory(prefix="omnicrm-bench-") as tmp:
        work = Path(tmp)
        files = write_dataset(dataset, work)
        files["minimal"] = write_minimal_profiles(work / "minimal.jsonl", minimal_profiles)
        # The data set stays in memory to be sent; the garbage collector of the measured code (an API
        # process, which never holds it) must not walk it over and over: set it aside for good.
        gc.collect()
        gc.freeze()
        console.print(
            f"data set: {customers:,} profiles, {len(dataset.events):,} events, {minimal_profiles:,} minimal "
            f"profiles; {runs} runs each; SQLite synchronous={Settings().sqlite_synchronous} "
            "(OMNICRM_SQLITE_SYNCHRONOUS)"
        )
        if only_rest:
            _rest(dataset.events, work, rest_seconds, concurrency, workers, console)
            return
        sqlite = _sqlite_runs(dataset.events, files, runs, work)
        _report_profiles(console, "SQLite", (customers, minimal_profiles), sqlite)
        _report(console, "SQLite", len(dataset.events), sqlite)
        try:
            pg = _pg_runs(dataset.events, files, runs, pg_url)
            _report_profiles(console, "PostgreSQL", (customers, minimal_profiles), pg)
            _report(console, "PostgreSQL", len(dataset.events), pg)
        except Exception as exc:  # report and go on with the rest
            console.print(f"PostgreSQL skipped: {exc}")
        if not skip_rest:
            _rest(dataset.events, work, rest_seconds, concurrency, workers, console)
