"""Catching up on a long queue with several processes: the customers are split into partitions
(`domain/partitions.py`), each decided by its own process on both cores.

1. `decider.split` hands the queued events, up to the newest one now, to the partitions and moves
   the whole queue's offset past them, in one transaction.
2. Each process drains its partition: it reads the events and keeps its own customers' ones. The
   engine decides on a snapshot and writes briefly, so the processes seldom wait for each other;
   each checks its own slots' conversation counters, which the others never move.
3. `decider.fold` drops the partitions' offsets once all reached the bound; then the whole queue
   goes on from there (new events, timers) in this process.

A process that dies leaves its partition's offset behind: every later drain of the whole queue
(this command, `omnicrm worker`, the API's worker) finishes the partitions before anything newer, so
no event is skipped, decided twice, or decided before an older event of the same customer. The
processes die with this one, even if it is killed outright (`lifeline.py`): none is left waiting.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing.context import BaseContext
from typing import Any

from omnicrm import lifeline
from omnicrm.bootstrap import Container, bootstrap
from omnicrm.domain.partitions import COUNTS, Partition
from omnicrm.services.conversations import decider
from omnicrm.services.conversations.report import Report
from omnicrm.settings import Settings

log = logging.getLogger(__name__)

# Below this many queued events one process is faster than starting others (~1 s each).
MIN_EVENTS = 20_000
# Events per batch while such a backlog is worked off. Each batch reads its people's facts once, and
# over a long queue the same people come back batch after batch: on the bench data set (157,500
# events, 2 processes) 2,000 -> 10,000 events per batch took 15.6 s -> 12.8 s, 20,000 took 8.0 s and
# 40,000 7.4 s (10 % less CPU). The price: each write holds the database's write lock longer (measured
# 250-400 ms at 20,000, 370-520 ms at 40,000) and each process holds ~375 MB instead of ~295 MB. A bulk
# catch-up can afford both; a live worker keeps small batches (decider.BATCH). `omnicrm decide`, with
# nothing else writing, goes further: 80,000 (one batch per partition on the bench data set) took
# 6.65-7.54 s against 7.19-9.21 s at 40,000 (6 interleaved pairs, medians 7.10 / 7.58 s), at ~527 MB per
# process and one write of ~1 s. The worker beside the API keeps 40,000: its writes hold up intake.
BACKLOG_BATCH = 80_000
LIVE_BACKLOG_BATCH = 40_000


def _drain_partition(
    settings: dict[str, Any], index: int, count: int, upto: int, limit: int, now: datetime | None
) -> dict[str, int]:
    """In a child process: drain one partition up to `upto`; returns the report's counts."""
    container = bootstrap(Settings.model_validate(settings))
    try:
        partition = Partition(index, count)
        report = decider.drain(
            container.uow, container.library, limit=limit, partition=partition, upto=upto, now=now
        )
    finally:
        container.close()
    return report.counts()


def _start_method() -> BaseContext:
    """How the partitions' processes start. A fork starts in milliseconds with every module
    imported; a spawned process imports and reads the library first (~1 s). Forking copies the
    threads' state half-way, so only a process with one thread forks (`omnicrm decide`, the bench;
    the worker has its campaign scheduler), and only on Linux (macOS's system libraries refuse it)."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def catch_up(
    container: Container,
    *,
    processes: int,
    limit: int = decider.BATCH,
    backlog_limit: int = BACKLOG_BATCH,
    min_events: int = MIN_EVENTS,
    now: datetime | None = None,
    timers: int = decider.TIMERS,
    timer_rounds: int | None = None,
) -> Report:
    """Drain the whole queue, with `processes` partitions in parallel when at least `min_events`
    wait (else, or with 1, in this process), then fire due timers (`timers` per transaction, for
    `timer_rounds` transactions or until none is due); returns the totals. Batches hold `limit`
    events, `backlog_limit` while at least `min_events` wait. `now`: the clock of every batch
    (default: the time each one starts)."""
    if processes not in COUNTS:
        raise ValueError(f"processes: {processes} is not one of {', '.join(map(str, COUNTS))}")
    library = container.current_library()
    total = decider.resume_partitions(container.uow, library, limit=limit, now=now)
    queued = decider.backlog(container.uow)
    long_queue = queued >= min_events
    if long_queue:
        limit = max(limit, backlog_limit)
    if processes > 1 and long_queue:
        bound = decider.split(container.uow, processes)
        if bound is not None:
            dumped = container.settings.model_dump()
            container.engine.dispose()  # no database connection (nor the checkpoint thread) crosses a fork
            context = _start_method()
            log.info(
                "catch-up: %d queued events split among %d processes (%s)",
                queued,
                processes,
                context.get_start_method(),
            )
            # The processes are started by this thread, which waits for them: they end with it, even
            # if this process is killed outright (`lifeline`).
            with ProcessPoolExecutor(
                max_workers=processes,
                mp_context=context,
                initializer=lifeline.die_with,
                initargs=(os.getpid(),),
            ) as pool:
                futures = [
                    pool.submit(_drain_partition, dumped, index, processes, bound, limit, now)
                    for index in range(processes)
                ]
                for future in futures:
                    total.add(Report.of(future.result()))
            decider.fold(container.uow)
    total.add(
        decider.drain(container.uow, library, limit=limit, now=now, timers=timers, timer_rounds=timer_rounds)
    )
    return total


def default_processes() -> int:
    """As many processes as cores, within the partition counts."""
    cores = os.cpu_count() or 1
    return max(n for n in COUNTS if n <= cores)
