"""Group commit: single events from many concurrent requests share one transaction.

Each request still gets its answer only after its event is committed - and the commit is on disk
with SQLite's default `synchronous=FULL` and on PostgreSQL (see store/db.py for the weaker NORMAL a
bank may choose) - but the database sees one commit, and one sync, per few milliseconds instead of
one per request: that is what lets one SQLite file or one PostgreSQL server take thousands of
single-event requests a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from omnicrm.domain.errors import DomainError, Unavailable
from omnicrm.services.intake.ingest import IngestResult, Prepared, store
from omnicrm.store.disk_full import is_disk_full
from omnicrm.store.uow import UnitOfWork

log = logging.getLogger(__name__)
Outcome = tuple[str, str, str | None]
_FULL = "the database cannot grow (its disk is full): nothing of this request was stored; try again later"


@dataclass(slots=True)
class _Job:
    item: Prepared
    actor: str
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop


def _settle(settled: list[tuple[asyncio.Future[Outcome], Outcome | None, BaseException | None]]) -> None:
    """Runs on the event loop: answer every request of the batch that waited on this loop."""
    for future, outcome, error in settled:
        if future.done():  # the request was cancelled (client gone): nothing to tell
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]


class GroupCommitWriter:
    """A background thread that writes queued single events in small batches."""

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        *,
        linger_s: float,
        max_batch: int,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.uow, self.linger_s, self.max_batch, self.after_commit = uow, linger_s, max_batch, after_commit
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="omnicrm-group-commit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def write(self, item: Prepared, actor: str) -> Outcome:
        """Queue one event and wait until it is committed (or refused). The whole batch is
        answered with one wake-up of each waiting event loop, not one hand-over per request."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Job(item, actor, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.linger_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(job)
            self._write(batch)

    def _write(self, batch: list[_Job]) -> None:
        """Commit the batch; if it fails, commit each event alone so one bad event fails only itself."""
        try:
            outcomes = self._commit(batch)
        except Exception as exc:
            if is_disk_full(exc):
                # Written alone, each event would meet the same full disk: the whole group (rolled
                # back, nothing of it stored) is answered 503, with one log line and no traceback.
                log.warning("database full: a group of %d events was not stored (503)", len(batch))
                self._answer(batch, None, Unavailable(_FULL))
                return
            if len(batch) == 1:
                if not isinstance(exc, DomainError):
                    log.exception("event %s could not be stored", batch[0].item.event_id)
                self._answer(batch, None, exc)
                return
            for job in batch:
                self._write([job])
            return
        self.after_commit()
        self._answer(batch, outcomes, None)

    @staticmethod
    def _answer(batch: list[_Job], outcomes: list[Outcome] | None, error: BaseException | None) -> None:
        on_loops: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for index, job in enumerate(batch):
            outcome = None if outcomes is None else outcomes[index]
            on_loops.setdefault(job.loop, []).append((job.future, outcome, error))
        for loop, settled in on_loops.items():
            with contextlib.suppress(RuntimeError):  # a closed loop (shutting down): nobody waits
                loop.call_soon_threadsafe(_settle, settled)

    def _commit(self, batch: list[_Job]) -> list[Outcome]:
        """One transaction for the batch; the outcome of each job, in the batch's order.

        Outcomes belong to the jobs, not to the event ids: of several copies of one event_id in a
        batch (a client's retry racing its first try), `ingest` writes the first and answers it
        `accepted`, and answers every other copy `duplicate` - one 201, as if they had come one
        after the other. A copy in a later batch finds the stored row; a copy another process
        stored meanwhile makes `store` run the transaction again (see `ingest.store`)."""
        by_actor: dict[str, list[int]] = {}
        for index, job in enumerate(batch):
            by_actor.setdefault(job.actor, []).append(index)
        groups = list(by_actor.items())
        results: list[IngestResult] = store(
            self.uow, [(actor, [batch[i].item for i in at]) for actor, at in groups], now=datetime.now(UTC)
        )
        outcomes: dict[int, Outcome] = {}
        for (_, at), result in zip(groups, results, strict=True):
            outcomes.update(zip(at, result.outcomes, strict=True))
        return [outcomes[index] for index in range(len(batch))]
