"""The `omnicrm` command: migrate, serve, demo, generate, import, users, audit, check-config, bench."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from omnicrm import logs
from omnicrm.catchup import LIVE_BACKLOG_BATCH, catch_up
from omnicrm.cli.audit import audit_app
from omnicrm.cli.bench import bench_app
from omnicrm.cli.bridge import bridge_command
from omnicrm.cli.common import (
    CLI_ACTOR,
    PROCESSES,
    check_settings,
    console,
    err,
    open_container,
    print_file_errors,
    processes_option,
    refusals_exit,
    report_error,
)
from omnicrm.cli.dispatch import dispatch_command
from omnicrm.cli.imports import import_app, import_file
from omnicrm.cli.ports import refuse_busy_port
from omnicrm.cli.replay import replay as replay_command
from omnicrm.cli.scenarios import scenarios_app
from omnicrm.cli.status import StatusLine, figures_of
from omnicrm.cli.supervise import DeciderProcess, DispatcherProcess
from omnicrm.cli.users import issue_token, users_app
from omnicrm.domain.errors import InvalidInput
from omnicrm.services.access import auth
from omnicrm.services.campaigns.campaign_launch import CampaignScheduler
from omnicrm.services.conversations import decider, explaining
from omnicrm.services.conversations.datafiles import DataFileError, load_catalogue, load_library
from omnicrm.services.profiles import client_file
from omnicrm.settings import Settings
from omnicrm.sim.generate import DatasetSize, generate, write_dataset
from omnicrm.store import accounts, profiles
from omnicrm.store import migrate as migrations
from omnicrm.store.doorbell import Doorbell
from omnicrm.store.leader import Leadership

app = typer.Typer(help="omnicrm: omnichannel CRM automation for banks.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(bench_app, name="bench")
app.add_typer(scenarios_app, name="scenarios")
app.command("replay")(replay_command)
app.command("dispatch")(dispatch_command)
app.command("bridge")(bridge_command)
app.callback()(check_settings)


@app.command()
def migrate() -> None:
    """Apply the database migrations (SQLite or PostgreSQL, from OMNICRM_DATABASE_URL)."""
    container = open_container(migrate=True)
    console.print(f"schema at revision {migrations.current(container.engine)}")


@app.command("check-config")
def check_config() -> None:
    """Validate the data files (event catalogue, scenarios); print file, line and reason for every error."""
    settings = Settings()
    try:
        catalogue = load_catalogue(settings.catalogue_file)
        library = load_library(settings.scenarios_dir, catalogue)
    except DataFileError as exc:
        print_file_errors(exc)
        raise typer.Exit(1) from None
    console.print(
        f"{settings.catalogue_file}: {len(catalogue.types)} event types, version {catalogue.version}: ok"
    )
    console.print(
        f"{settings.scenarios_dir}: {len(library.current)} scenarios ({len(library.versions)} versions), "
        f"policy version {library.policy_version}: ok"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Serve the API (OpenAPI docs at /docs), with the decision worker beside it (embedded mode)."""
    settings = Settings()
    host, port = host or settings.host, port or settings.port
    level, json_lines = _configure_logs()
    refuse_busy_port(host, port)
    open_container(migrate=True).close()
    beside: DeciderProcess | None = None
    if settings.decide_in_process and settings.decider_process:
        beside = DeciderProcess(settings.decider_poll_ms)
        beside.start()
        os.environ["OMNICRM_DECIDE_IN_PROCESS"] = "false"  # the API workers leave deciding to it
    sender = DispatcherProcess() if settings.dispatch_process else None
    if sender is not None:
        sender.start()
    try:
        uvicorn.run(
            "omnicrm.api.main:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers or settings.workers,
            log_level="warning",
            log_config=logs.uvicorn_config(level, json=json_lines),  # applied in every worker process
            access_log=False,
        )
    finally:
        if beside is not None:
            beside.stop()
        if sender is not None:
            sender.stop()


@app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option(help="Directory for customers/events/interactions .jsonl")] = Path(
        "var/data"
    ),
    seed: int = 42,
    customers: int = 18_000,
    events: int = 126_000,
    interactions: int = 31_500,
    days: int = 90,
) -> None:
    """Write a deterministic synthetic data set shaped like the paper's (18,000 / 126,000 / 31,500)."""
    start = datetime(2026, 8, 1, tzinfo=UTC)
    dataset = generate(seed=seed, size=DatasetSize(customers, events, interactions), start=start, days=days)
    for name, path in write_dataset(dataset, out).items():
        console.print(f"{name}: {path}")


@app.command()
def demo(
    customers: int = 2_000,
    events: int = 14_000,
    interactions: int = 3_500,
    serve_api: bool = True,
    host: Annotated[str | None, typer.Option(help="Address to serve on (default OMNICRM_HOST)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default OMNICRM_PORT)")] = None,
) -> None:
    """Create the database, load a small synthetic data set, print an admin token and serve the API."""
    settings = Settings()
    host, port = host or settings.host, port or settings.port
    serving = serve_api and not os.environ.get("OMNICRM_DEMO_NO_SERVE")
    if serving:  # before anything is created or printed
        refuse_busy_port(host, port)
    container = open_container()
    with container.reader() as conn:
        loaded = profiles.count_customers(conn) > 0
        has_admin = accounts.user_by_name(conn, "demo-admin") is not None
    if not has_admin:
        with container.uow() as uow:
            auth.create_user(
                uow.conn,
                username="demo-admin",
                role="admin",
                password=None,
                branch=None,
                actor=CLI_ACTOR,
                now=datetime.now(UTC),
            )
            uow.commit()
    if not loaded:
        out = Path("var/demo-data")
        generate_cmd(out=out, customers=customers, events=events, interactions=interactions)
        for kind in ("customers", "events", "interactions"):
            import_file(kind, out / f"{kind}.jsonl")
        decide()
    issue_token("demo-admin", name="demo", days=1)
    console.print(f"API on http://{host}:{port}/docs - use the token above as a Bearer token")
    if serving:
        serve(host=host, port=port)


@app.command()
def decide(processes: Annotated[int, PROCESSES] = 0) -> None:
    """Run the decision worker once: every new event, then every expired timer."""
    container = open_container()
    report = catch_up(container, processes=processes_option(processes))
    console.print(
        f"{report.events} events: {report.decisions} decisions, {report.started} conversations started, "
        f"{report.completed} ended, {report.messages} messages and {report.tasks} tasks queued, "
        f"{report.skipped} sends skipped (not permitted)"
    )


def _configure_logs() -> tuple[str, bool]:
    """Logs as JSON lines or text (`OMNICRM_LOG_FORMAT`, `OMNICRM_LOG_LEVEL`; logs.py); a bad value
    is refused in one line."""
    try:
        level, json_lines = logs.level_from_env(), logs.json_wanted()
    except ValueError as exc:
        err.print(f"configuration refused: {exc}", markup=False)
        raise typer.Exit(2) from None
    logs.configure(level, json=json_lines)
    return level, json_lines


def _interrupted(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def worker(
    idle_ms: Annotated[float, typer.Option(help="Pause when there is nothing to do")] = 200.0,
    processes: Annotated[int, PROCESSES] = 0,
    parent: Annotated[int | None, typer.Option(help="Exit when this process is gone (set by serve)")] = None,
) -> None:
    """Run the decision worker until interrupted (`omnicrm serve` starts one; run it yourself when
    the API does not). One worker per database decides, the others stand by. A long queue (a first
    start, a bulk import) is caught up with several processes; expired timers go in bites between
    new events."""
    _configure_logs()
    container = open_container()
    count = processes_option(processes)
    leadership = Leadership(container.engine)
    doorbell = Doorbell(container.engine)  # rung by the API's commits: no waiting out the pause
    signal.signal(signal.SIGTERM, _interrupted)  # `serve` stops it so: finish cleanly, like Ctrl-C
    scheduler = CampaignScheduler(
        container.uow,
        container.current_library,
        container.catalogue,
        interval_s=container.settings.campaign_poll_s,
        after_batch=doorbell.ring,
    )
    scheduler.start()
    console.print("decision worker and campaign scheduler running; Ctrl-C stops them")
    # A status line for a person at a terminal; not under `serve` (its child shares serve's terminal).
    status = StatusLine(figures_of(container), console) if console.is_terminal and parent is None else None
    if status is not None:
        status.start()
    try:
        while parent is None or os.getppid() == parent:
            if not leadership.acquire():
                time.sleep(1)  # another worker decides on this database; stand by
                continue
            doorbell.listen()
            report = catch_up(
                container,
                processes=count,
                backlog_limit=LIVE_BACKLOG_BATCH,
                timers=decider.LIVE_TIMERS,
                timer_rounds=1,
            )
            if not report.scanned and not report.timers:
                doorbell.wait(idle_ms / 1000)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        if status is not None:
            status.stop()
        scheduler.stop()
        doorbell.close()
        leadership.release()


@app.command()
def explain(customer: str, limit: int = 10) -> None:
    """Explain the latest decisions about a customer, in words (by id, or identifier kind:value)."""
    container = open_container(migrate=False)
    with refusals_exit(), container.reader() as conn:
        customer_id = customer
        if ":" in customer:
            kind, value = customer.split(":", 1)
            customer_id = client_file.lookup(conn, kind, value)
        result = explaining.decisions(conn, customer_id, limit=limit)
    if not result["items"]:
        console.print(f"no decisions about {result['customer_id']} yet")
    for item in result["items"]:
        console.print(item["explanation"], markup=False, highlight=False)
        console.print()


@app.command()
def roles() -> None:
    """Print the route table: every API operation, the permission it needs and the roles holding it
    (read from the routes and domain/permissions.py; the README's table is this output)."""
    from omnicrm.api.app import api_routes  # the web stack only for this command
    from omnicrm.api.guards import markdown_table

    typer.echo(markdown_table(api_routes()), nl=False)


def main() -> None:  # pragma: no cover
    try:
        app()
    except InvalidInput as exc:
        report_error(exc)
        raise SystemExit(1) from None
