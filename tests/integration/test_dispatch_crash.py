"""The dispatch crash test (issue 19), on PostgreSQL: thousands of e-mails sent by two `omnicrm
dispatch` processes while one of them is killed with SIGKILL at random, again and again, and
PostgreSQL itself is restarted once; a consent withdrawal is committed mid-run.

The receiving SMTP server counts arrivals per idempotency key. Promised: nothing lost (every
message sent, or withdrawn), no message delivered twice beyond one duplicate attempt per kill (a
worker killed after the server accepted a message but before its commit sends it again), and no
message to a person whose withdrawal committed arrives after that commit.

OMNICRM_CRASH_N sets the number of e-mails (10,000 by default, as the issue asks)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from omnicrm.bench.outbox_seed import daytime_zone, seed
from omnicrm.bench.smtp_sink import CountingSink
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.services.contracts import ConsentIn
from omnicrm.services.profiles import customers
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store.tables import outbox

PG_URL = os.environ.get("OMNICRM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SRC = Path(__file__).resolve().parents[2] / "src"
N = int(os.environ.get("OMNICRM_CRASH_N", "10000"))
KILLS = 20


def _restart_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql"))
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _worker(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRM_")}
    env.update(
        PYTHONPATH=str(SRC),
        OMNICRM_DATABASE_URL=url,
        OMNICRM_ENV="test",
        OMNICRM_SMTP_HOST="127.0.0.1",
        OMNICRM_SMTP_PORT=str(port),
        OMNICRM_DISPATCH_IDLE_MS="20",
        OMNICRM_DISPATCH_BACKOFF_S="0.2",
        OMNICRM_DISPATCH_BACKOFF_MAX_S="1",
        OMNICRM_DISPATCH_MAX_ATTEMPTS="100",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "omnicrm", "dispatch"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _left(container: Container) -> int:
    with container.reader() as conn:
        return int(conn.execute(select(func.count()).where(outbox.c.status == "queued")).scalar_one())


@pytest.mark.skipif(
    not os.path.isdir("/etc/postgresql") or shutil.which("pg_ctlcluster") is None,
    reason="needs a local PostgreSQL cluster to restart",
)
def test_kill9_and_a_postgres_restart_lose_nothing_and_double_nothing(
    own_pg_database: str, request: pytest.FixtureRequest
) -> None:
    others: dict[str, Container] = request.getfixturevalue("_containers")  # their pools die with the restart
    settings = Settings(
        database_url=own_pg_database,
        catalogue_file=SHIPPED_CATALOGUE,
        scenarios_dir=SHIPPED_SCENARIOS,
        env="test",
    )
    container = bootstrap(settings, migrate=True)
    now = datetime.now(UTC)
    with container.uow() as uow:
        keys = seed(uow.conn, N, now=now, zone=daytime_zone(now))
        uow.commit()
    rng = random.Random(19)
    kills = 0
    withdrawn_at: float | None = None
    withdrawn_people: list[str] = []
    with CountingSink() as sink:
        workers = [_worker(own_pg_database, sink.port) for _ in range(2)]
        try:
            deadline = time.monotonic() + 600
            restarted = False
            progress = (N, time.monotonic())
            while _left(container) and time.monotonic() < deadline:
                left = _left(container)
                if left < progress[0]:
                    progress = (left, time.monotonic())
                assert time.monotonic() - progress[1] < 60, f"no message sent for 60 s; {left} still queued"
                # the first KILLS kills come fast, so they all land before the queue is empty
                time.sleep(rng.uniform(0.1, 0.4) if kills < KILLS else rng.uniform(0.2, 0.8))
                if kills < KILLS or rng.random() < 0.05:
                    victim = rng.randrange(len(workers))
                    workers[victim].send_signal(signal.SIGKILL)
                    workers[victim].wait()
                    kills += 1
                    workers[victim] = _worker(own_pg_database, sink.port)
                if kills == KILLS // 2 and not restarted:
                    _restart_postgres()
                    restarted = True
                    container.engine.dispose()
                    for other in others.values():
                        other.engine.dispose()
                if kills == KILLS // 4 and withdrawn_at is None:
                    withdrawn_people, withdrawn_at = _withdraw_some(container, rng)
            assert restarted, "PostgreSQL was not restarted during the run"
            assert kills >= KILLS
            assert not _left(container), "messages still queued at the deadline"
        finally:
            for w in workers:
                w.kill()
                w.wait()
        arrivals = sink.arrivals()

    with container.reader() as conn:
        rows = conn.execute(select(outbox.c.idempotency_key, outbox.c.status, outbox.c.customer_id)).all()
    container.close()
    sent = {k for k, status, _ in rows if status == "sent"}
    withdrawn = {k for k, status, _ in rows if status == "withdrawn"}
    assert sent | withdrawn == set(keys), "a message ended neither sent nor withdrawn"
    lost = sent - set(arrivals)
    assert not lost, f"{len(lost)} messages marked sent never arrived"
    assert set(arrivals) <= sent | {"<none>"} - {"<none>"} | set(arrivals) & sent, (
        "an arrival is not marked sent"
    )
    duplicates = sum(len(times) - 1 for times in arrivals.values())
    assert duplicates <= kills, f"{duplicates} duplicate deliveries for {kills} kills"
    owners = {k: cid for k, _, cid in rows}
    late = [
        k
        for k, times in arrivals.items()
        if owners.get(k) in set(withdrawn_people) and max(times) > (withdrawn_at or 0)
    ]
    assert not late, f"{len(late)} messages arrived after the consent withdrawal committed"
    print(
        f"\ncrash test: {N} e-mails, {kills} kills, 1 PostgreSQL restart: {len(sent)} sent, "
        f"{len(withdrawn)} withdrawn, 0 lost, {duplicates} duplicate deliveries"
    )


def _withdraw_some(container: Container, rng: random.Random) -> tuple[list[str], float]:
    with container.reader() as conn:
        queued = (
            conn.execute(select(outbox.c.customer_id).where(outbox.c.status == "queued").limit(400))
            .scalars()
            .all()
        )
    people = rng.sample(list(queued), min(100, len(queued)))
    withdrawal = ConsentIn(channel="email", purpose="marketing", granted=False, source="branch")
    with container.uow() as uow:
        for cid in people:
            customers.record_consent(uow.conn, cid, withdrawal, actor="crash-test", now=datetime.now(UTC))
        uow.commit()
    return people, time.time()
