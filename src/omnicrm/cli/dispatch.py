"""`omnicrm dispatch`: the channel worker. It sends what the decisions queued, one message per
transaction (services/dispatch/worker.py); run several on PostgreSQL to send in parallel (each
claims with SKIP LOCKED), one on SQLite (the one writer). `omnicrm serve` starts one beside the API."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import timedelta
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from omnicrm.cli.common import console, open_container
from omnicrm.services.dispatch.providers import channels_from
from omnicrm.services.dispatch.worker import DispatchConfig, Dispatcher

log = logging.getLogger(__name__)


def _interrupted(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


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
    dispatcher = Dispatcher(container.uow, container.current_library, channels, config)
    signal.signal(signal.SIGTERM, _interrupted)
    idle = settings.dispatch_idle_ms / 1000
    console.print(
        f"dispatch worker running on {', '.join(sorted(channels)) or 'no channel'}; Ctrl-C stops it"
    )
    sent = 0
    try:
        while parent is None or os.getppid() == parent:
            try:
                done = dispatcher.step()
            except DBAPIError as exc:  # the database restarted or is unreachable: wait, then go on
                log.warning("dispatch: database error (%s); trying again", type(exc.orig).__name__)
                time.sleep(1.0)
                continue
            if done is None:
                if once:
                    break
                time.sleep(idle)
            else:
                sent += done.outcome == "sent"
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        for channel in channels.values():
            channel.close()
        container.close()
    if once:
        console.print(f"{sent} sent")
