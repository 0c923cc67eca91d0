"""`omnicrm bench …`: the benchmarks, each printing its figures (README: Performance). The heavy
parts (aiosmtpd, Kannel, the load generators) are imported by the command that needs them."""

from __future__ import annotations

from typing import Annotated

import typer

from omnicrm.bench import decide as bench_decide
from omnicrm.bench import ingest as bench_ingest
from omnicrm.cli.common import PROCESSES, console, processes_option
from omnicrm.settings import Settings

bench_app = typer.Typer(help="Benchmarks that print figures.")


@bench_app.command("decide")
def bench_decide_cmd(
    events: int = 126_000,
    customers: int = 18_000,
    interactions: int = 31_500,
    runs: Annotated[int, typer.Option(help="Repetitions; the median is reported")] = 3,
    latency_seconds: Annotated[
        float, typer.Option(help="Duration of the event-to-decision latency test")
    ] = 10.0,
    rate: Annotated[float, typer.Option(help="Events per second posted during the latency test")] = 500.0,
    processes: Annotated[int, PROCESSES] = 0,
) -> None:
    """Decisions per second over the data set with every scenario active (in one process, and in
    parallel ones), and event-to-decision latency."""
    bench_decide.run(
        processes=processes_option(processes),
        events=events,
        customers=customers,
        interactions=interactions,
        runs=runs,
        latency_seconds=latency_seconds,
        rate=rate,
        console=console,
    )


@bench_app.command("ingest")
def bench_ingest_cmd(
    events: int = 126_000,
    customers: int = 18_000,
    runs: Annotated[int, typer.Option(help="Repetitions; the median is reported")] = 3,
    pg_url: Annotated[str | None, typer.Option(help="PostgreSQL URL (default OMNICRM_PG_BENCH_URL)")] = None,
    rest_seconds: Annotated[float, typer.Option(help="Duration of the REST load test")] = 10.0,
    concurrency: int = 32,
    skip_rest: bool = False,
    only_rest: bool = False,
    workers: Annotated[int, typer.Option(help="API worker processes for the REST test")] = 2,
) -> None:
    """Batch ingestion on SQLite and PostgreSQL, then REST p50/p99 under concurrent clients."""
    settings = Settings()
    bench_ingest.run(
        events=events,
        customers=customers,
        runs=runs,
        pg_url=pg_url or settings.pg_bench_url,
        rest_seconds=rest_seconds,
        concurrency=concurrency,
        skip_rest=skip_rest,
        workers=workers,
        only_rest=only_rest,
        console=console,
    )


@bench_app.command("dispatch")
def bench_dispatch_cmd(
    messages: int = 10_000,
    workers: Annotated[int, typer.Option(help="Dispatch worker processes")] = 2,
    runs: Annotated[int, typer.Option(help="Repetitions; the median is reported")] = 3,
    smtp: Annotated[str | None, typer.Option(help="host:port of an SMTP sink (default: our own)")] = None,
    pg_url: Annotated[str | None, typer.Option(help="PostgreSQL URL (default OMNICRM_PG_BENCH_URL)")] = None,
) -> None:
    """E-mails per second end to end: events in, decided, rendered, sent to an SMTP sink."""
    from omnicrm.bench import dispatch as bench_dispatch  # aiosmtpd and the workers only here

    settings = Settings()
    bench_dispatch.run(
        pg_url=pg_url or settings.pg_bench_url,
        messages=messages,
        workers=workers,
        runs=runs,
        smtp=smtp,
        console=console,
    )


@bench_app.command("webhooks")
def bench_webhooks_cmd(
    messages: int = 5_000,
    concurrency: int = 32,
    runs: Annotated[int, typer.Option(help="Repetitions; the median is reported")] = 1,
    pg_url: Annotated[str | None, typer.Option(help="PostgreSQL URL (default OMNICRM_PG_BENCH_URL)")] = None,
) -> None:
    """Provider webhooks, each delivered three times at once: requests/s, and stored exactly once."""
    from omnicrm.bench import webhooks as bench_webhooks

    settings = Settings()
    bench_webhooks.run(
        pg_url=pg_url or settings.pg_bench_url,
        messages=messages,
        concurrency=concurrency,
        runs=runs,
        console=console,
    )


@bench_app.command("sms")
def bench_sms_cmd(
    messages: int = 10_000,
    threads: Annotated[int, typer.Option(help="Sending threads sharing one adapter")] = 8,
) -> None:
    """SMS per second through a real Kannel (bearerbox + smsbox + fakesmsc, started for the run)."""
    from omnicrm.bench import sms as bench_sms

    figures = bench_sms.run(messages, threads)
    console.print(
        ", ".join(f"{k}: {v:,.0f}" if isinstance(v, float) else f"{k}: {v:,}" for k, v in figures.items())
    )
