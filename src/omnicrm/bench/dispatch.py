"""`omnicrm bench dispatch`: e-mails per second end to end - events in, decided, rendered, sent and
accepted by an SMTP sink - with the decision worker and the dispatch workers running as they do in
production (`omnicrm worker`, `omnicrm dispatch`), on PostgreSQL.

Each run: a fresh database with `messages` clients (an e-mail address and consent each), then one
`deposit.maturing` event per client is stored in 1,000-event transactions as fast as the intake
takes them; the deposit-renewal scenario's first step queues an e-mail, which a dispatch worker
sends. The rate is messages / (first event stored -> last message at the sink). The sink is our
counting aiosmtpd server in a child process, or any SMTP server given with --smtp (e.g.
`python3 ../shared/tools/peer_dispatch/run.py sink`, to measure beside Celery on the same sink)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from omnicrm.bench.ingest import _pg_admin
from omnicrm.bench.outbox_seed import daytime_zone, people
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.services.intake import ingest
from omnicrm.settings import Settings
from omnicrm.store.tables import outbox


@contextmanager
def _database(pg_url: str) -> Iterator[str]:
    name = f"omnicrm_bench_dispatch_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin(pg_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _env(url: str, host: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRM_")}
    env.update(
        OMNICRM_DATABASE_URL=url,
        OMNICRM_SMTP_HOST=host,
        OMNICRM_SMTP_PORT=str(port),
        OMNICRM_DISPATCH_IDLE_MS="5",
    )
    return env


def _events(ids: list[str], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"bench-{cid}",
            "type": "deposit.maturing",
            "occurred_at": (now - timedelta(seconds=1)).isoformat(),
            "source": "core_banking",
            "customer_id": cid,
            "attributes": {"contract_number": f"D-{n}", "maturity_date": "2026-12-31", "amount": 1000 + n},
        }
        for n, cid in enumerate(ids)
    ]


def _sent(container: Container) -> int:
    with container.reader() as conn:
        return int(conn.execute(select(func.count()).where(outbox.c.status == "sent")).scalar_one())


@contextmanager
def _sink(smtp: str | None) -> Iterator[tuple[str, int, subprocess.Popen[bytes] | None]]:
    if smtp:
        host, _, given = smtp.rpartition(":")
        yield host or "127.0.0.1", int(given), None
        return
    code = (
        "import sys, time; from omnicrm.bench.smtp_sink import CountingSink\n"
        "with CountingSink() as s:\n    print(s.port, flush=True)\n    sys.stdin.read()\n"
    )
    child = subprocess.Popen(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    try:
        yield "127.0.0.1", port, child
    finally:
        child.kill()
        child.wait()


def one_run(pg_url: str, messages: int, workers: int, host: str, port: int) -> float:
    with _database(pg_url) as url:
        container = bootstrap(Settings(database_url=url), migrate=True)
        now = datetime.now(UTC)
        zone = daytime_zone(now)
        with container.uow() as uow:
            ids = people(uow.conn, messages, now=now, zone=zone)
            uow.commit()
        env = _env(url, host, port)
        children = [
            subprocess.Popen([sys.executable, "-m", "omnicrm", "worker"], env=env, stdout=subprocess.DEVNULL)
        ]
        children += [
            subprocess.Popen(
                [sys.executable, "-m", "omnicrm", "dispatch"], env=env, stdout=subprocess.DEVNULL
            )
            for _ in range(workers)
        ]
        try:
            time.sleep(3.0)  # the workers start (imports, library) before the clock starts
            items = ingest.prepare(_events(ids, now), container.catalogue, ingest.EVENT_KINDS)
            started = time.perf_counter()
            for chunk in range(0, len(items), 1000):
                ingest.store(container.uow, [("bench", items[chunk : chunk + 1000])], now=datetime.now(UTC))
            deadline = started + 600
            while _sent(container) < messages and time.perf_counter() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            done = _sent(container)
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.wait(timeout=30)
            container.close()
        if done < messages:
            raise RuntimeError(f"only {done} of {messages} e-mails were sent within 600 s")
        return messages / elapsed


def run(
    *, pg_url: str, messages: int, workers: int, runs: int, smtp: str | None, console: Console
) -> list[float]:
    rates: list[float] = []
    with _sink(smtp) as (host, port, _):
        for n in range(runs):
            rate = one_run(pg_url, messages, workers, host, port)
            rates.append(rate)
            console.print(f"run {n + 1}: {messages:,} e-mails decided, rendered and sent: {rate:,.0f}/s")
    console.print(
        f"omnicrm dispatch ({workers} workers, PostgreSQL): {statistics.median(rates):,.0f} e-mails/s "
        f"median of {runs} ({min(rates):,.0f}-{max(rates):,.0f})"
    )
    return rates
