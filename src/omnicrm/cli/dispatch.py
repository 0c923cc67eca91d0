"""`omnicrm dispatch`: the channel worker. It sends what the decisions queued (services/dispatch/
worker.py): on PostgreSQL a batch per transaction (OMNICRM_DISPATCH_BATCH) with the sent journal,
and several workers send in parallel (each claims with SKIP LOCKED); on SQLite one message per
transaction and one worker (the one writer). `omnicrm serve` starts one beside the API. Once an hour
it forgets journal lines older than the dispatch expiry."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from omnicrm.cli.common import console, open_container
from omnicrm.services.callcentre.queues import QueueFile
from omnicrm.services.dispatch.providers import channels_from
from omnicrm.services.dispatch.worker import DispatchConfig, Dispatcher
from omnicrm.store.dispatch import Journal

log = logging.getLogger(__name__)
JOURNAL_PURGE_S = 3600.0


def _interrupted(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _close(journal: Journal | None) -> None:
    if journal is not None:
        with contextlib.suppress(DBAPIError):
            journal.close()


def dispatch_command(
    once: Annotated[bool, typer.Option(help="Send what is due now, then stop")] = False,
    parent: Annotated[int | None, typer.Option(help="Exit when this process is gone (set by serve)")] = None,
) -> None:
    """Send queued messages until interrupted: re-check, render, send, record (README: channels)."""
    container = open_container()
    settings = container.settings
    channels = channels_from(settings)
    config = DispatchConfig(
        max_attempts=settings.dispatch_max_attempts,
        backoff=timedelta(seconds=settings.dispatch_backoff_s),
        backoff_max=timedelta(seconds=settings.dispatch_backoff_max_s),
        expiry=timedelta(hours=settings.dispatch_expiry_hours),
        feedback_key=settings.feedback_key.get_secret_value().encode(),
        public_url=settings.public_url,
    )
    postgres = container.engine.dialect.name == "postgresql"
    journal = Journal(container.engine) if postgres else None
    config = replace(config, batch=settings.dispatch_batch if postgres else 1)
    queues = QueueFile(settings.scenarios_dir)
    dispatcher = Dispatcher(
        container.uow, container.current_library, channels, config, queues=queues.current, journal=journal
    )
    signal.signal(signal.SIGTERM, _interrupted)
    idle = settings.dispatch_idle_ms / 1000
    console.print(f"dispatch worker running on {', '.join(dispatcher.served)}; Ctrl-C stops it")
    sent = 0
    purge_at = time.monotonic()
    try:
        while parent is None or os.getppid() == parent:
            try:
                if postgres and dispatcher.journal is None:  # a batch is sent only with its journal
                    dispatcher.journal = Journal(container.engine)
                done = dispatcher.step()
                if dispatcher.journal is not None and time.monotonic() >= purge_at:
                    dispatcher.journal.purge(datetime.now(UTC) - config.expiry)
                    purge_at = time.monotonic() + JOURNAL_PURGE_S
            except DBAPIError as exc:  # the database restarted or is unreachable: wait, then go on
                log.warning("dispatch: database error (%s); trying again", type(exc.orig).__name__)
                _close(dispatcher.journal)
                dispatcher.journal = None if postgres else dispatcher.journal
                time.sleep(1.0)
                continue
            if not done:
                if once:
                    break
                time.sleep(idle)
            sent += sum(d.outcome == "sent" for d in done)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        _close(dispatcher.journal)
        for channel in channels.values():
            channel.close()
        container.close()
    if once:
        console.print(f"{sent} sent")
