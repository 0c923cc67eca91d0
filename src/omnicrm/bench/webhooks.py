"""`omnicrm bench webhooks`: provider webhooks as a provider retries them - each report delivered three
times at once - through `omnicrm serve` (2 API workers and its decision worker) on PostgreSQL.

Each run seeds `messages` deposit-renewal conversations waiting on their sent e-mail, then posts one
signed webhook per e-mail (`opened`), three copies of each, shuffled, from `concurrency` clients. It
prints requests/s and checks what the promise is: every report stored once (feedback inbox, one
`message.reaction` per e-mail) and every wait advanced once (one SMS queued per conversation)."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from rich.console import Console
from sqlalchemy import func, select, update

from omnicrm.bench.dispatch import _database
from omnicrm.bench.outbox_seed import daytime_zone, seed
from omnicrm.bench.server import serving
from omnicrm.bootstrap import bootstrap
from omnicrm.services.feedback import webhooks
from omnicrm.settings import Settings
from omnicrm.store.tables import events, feedback_inbox, instances, outbox

SECRET = "bench-webhook-secret-0123456789abcdef"  # noqa: S105 - a throw-away provider on 127.0.0.1


def _count(conn: object, query: object) -> int:
    return int(conn.execute(query).scalar_one())  # type: ignore[attr-defined]


def one_run(pg_url: str, messages: int, concurrency: int) -> dict[str, Any]:
    with _database(pg_url) as url:
        container = bootstrap(Settings(database_url=url), migrate=True)
        now = datetime.now(UTC)
        zone = daytime_zone(now)
        with container.uow() as uow:
            keys = seed(uow.conn, messages, now=now, zone=zone, prefix=f"w{uuid.uuid4().hex[:6]}", sms=True)
            uow.conn.execute(
                update(outbox).values(status="sent", provider="mailer", provider_id=outbox.c.idempotency_key)
            )
            for key in keys:  # each conversation waits on its own e-mail (issue 17's binding)
                uow.conn.execute(
                    update(instances)
                    .where(
                        instances.c.id
                        == select(outbox.c.instance_id)
                        .where(outbox.c.idempotency_key == key)
                        .scalar_subquery()
                    )
                    .values(awaiting=[key])
                )
            uow.commit()
        bodies = [
            orjson.dumps(
                {
                    "events": [
                        {
                            "id": f"wh-{n}",
                            "message_id": key,
                            "status": "opened",
                            "occurred_at": now.isoformat(),
                        }
                    ]
                }
            )
            for n, key in enumerate(keys)
        ]
        calls = [b for b in bodies for _ in range(3)]
        random.Random(19).shuffle(calls)
        settings = {"webhook_secrets": orjson.dumps({"mailer": SECRET}).decode(), "dispatch_process": "false"}
        with serving(url, 2, None, **settings) as port:
            base = f"http://127.0.0.1:{port}/v1/webhooks/mailer"
            answers: list[int] = []

            def post(chunk: list[bytes]) -> list[int]:
                codes = []
                with httpx.Client(timeout=30) as client:
                    for body in chunk:
                        signature = webhooks.sign(SECRET, body, int(time.time()))
                        headers = {webhooks.HEADER: signature, "Content-Type": "application/json"}
                        codes.append(client.post(base, content=body, headers=headers).status_code)
                return codes

            chunks = [calls[i::concurrency] for i in range(concurrency)]
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                for codes in pool.map(post, chunks):
                    answers.extend(codes)
            elapsed = time.perf_counter() - started
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with container.reader() as conn:
                    queued = _count(conn, select(func.count()).where(outbox.c.channel == "sms"))
                if queued >= messages:
                    break
                time.sleep(0.5)
            time.sleep(2.0)  # anything more would show now
        with container.reader() as conn:
            stored = _count(conn, select(func.count()).select_from(feedback_inbox))
            reactions = _count(conn, select(func.count()).where(events.c.type == "message.reaction"))
            steps: dict[str, int] = dict(
                conn.execute(select(instances.c.step, func.count()).group_by(instances.c.step)).all()
            )
            # one advance per wait: wait_email -> one SMS queued -> wait_sms, whatever the replays
            sms = _count(
                conn, select(func.count(func.distinct(outbox.c.instance_id))).where(outbox.c.channel == "sms")
            )
            sms_rows = _count(conn, select(func.count()).where(outbox.c.channel == "sms"))
        container.close()
        if sms_rows != sms:
            sms = -sms_rows  # a conversation with two SMS: advanced twice
    bad = sum(code != 200 for code in answers)
    return {
        "requests_per_s": len(calls) / elapsed,
        "non_200": bad,
        "stored": stored,
        "reactions": reactions,
        "advances": sms,
        "steps": steps,
    }


def run(
    *, pg_url: str, messages: int, concurrency: int, runs: int, console: Console
) -> list[dict[str, float]]:
    results = []
    for n in range(runs):
        figures = one_run(pg_url, messages, concurrency)
        results.append(figures)
        ok = (
            figures["stored"] == figures["reactions"] == figures["advances"] == messages
            and not figures["non_200"]
        )
        console.print(
            f"run {n + 1}: {messages:,} webhooks x 3 at once: {figures['requests_per_s']:,.0f} requests/s; "
            f"stored {figures['stored']:,}, reactions {figures['reactions']:,}, "
            f"waits advanced {figures['advances']:,}, "
            f"non-200 {figures['non_200']} -> {'exactly once' if ok else 'NOT exactly once'}; "
            f"steps {figures['steps']}"
        )
    rates = [r["requests_per_s"] for r in results]
    console.print(f"webhooks: {statistics.median(rates):,.0f} requests/s median of {runs}")
    return results
