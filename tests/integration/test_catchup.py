"""Catching up on a long queue with partitions: the same decisions as one process, each event
decided once, and a catch-up a dead process left behind finished before anything newer."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from omnicrm.bootstrap import Container
from omnicrm.catchup import catch_up
from omnicrm.domain.partitions import Partition
from omnicrm.services.conversations import decider
from omnicrm.services.conversations.report import Report
from omnicrm.services.intake.importer import import_customers, import_events
from omnicrm.services.intake.ingest import EVENT_KINDS, INTERACTION_KINDS
from omnicrm.sim.generate import DatasetSize, generate, write_dataset
from omnicrm.store import offsets
from omnicrm.store.tables import decisions, events, instances, outbox
from omnicrm.store.tables import offsets as offsets_table

NOW = datetime(2026, 10, 30, 9, 30, tzinfo=UTC)  # after the generated period; a weekday morning


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data = generate(seed=7, size=DatasetSize(150, 1500, 300), start=datetime(2026, 8, 1, tzinfo=UTC))
    return write_dataset(data, tmp_path_factory.mktemp("catchup"))


@pytest.fixture
def loaded(container: Container, dataset: dict[str, Path]) -> Container:
    import_customers(container.uow, dataset["customers"], actor="test")
    import_events(container.uow, dataset["events"], container.catalogue, EVENT_KINDS, actor="test")
    import_events(
        container.uow, dataset["interactions"], container.catalogue, INTERACTION_KINDS, actor="test"
    )
    return container


def _outcome(container: Container) -> dict[str, list[tuple[Any, ...]]]:
    """What the engine decided, without the ids and clocks that differ between two runs."""
    with container.reader() as conn:
        return {
            "decisions": sorted(
                conn.execute(
                    select(
                        decisions.c.customer_id,
                        decisions.c.scenario_id,
                        decisions.c.event_id,
                        decisions.c.action,
                        decisions.c.channel,
                        decisions.c.due_at,
                    )
                ).all(),
                key=repr,
            ),
            "instances": sorted(
                conn.execute(
                    select(
                        instances.c.customer_id, instances.c.scenario_id, instances.c.status, instances.c.step
                    )
                ).all(),
                key=repr,
            ),
            "outbox": sorted(
                conn.execute(select(outbox.c.customer_id, outbox.c.channel, outbox.c.template)).all(),
                key=repr,
            ),
        }


def _forget_decisions(container: Container) -> None:
    """Back to the imported data, nothing decided yet."""
    with container.engine.begin() as conn:
        for table in (outbox, decisions, instances, offsets_table):
            conn.execute(delete(table))


def _decider_offsets(container: Container) -> dict[str, int]:
    with container.reader() as conn:
        return offsets.offsets_of(conn, decider.CONSUMER)


def _newest(container: Container) -> int:
    with container.reader() as conn:
        return int(conn.execute(select(func.max(events.c.id))).scalar_one())


# The catch-up as `omnicrm decide` runs it: in a fresh process whose only thread is the main one.
_FRESH_PROCESS = """
import json, logging, sys
from datetime import datetime
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from omnicrm.bootstrap import bootstrap
from omnicrm.catchup import catch_up
container = bootstrap()
report = catch_up(
    container, processes=2, min_events=0, limit=97, backlog_limit=97, now=datetime.fromisoformat(sys.argv[1])
)
print(json.dumps(report.counts()))
"""


def _parallel(container: Container, start_method: str) -> tuple[Report, str]:
    """Two processes catch up, started by `start_method`; returns the totals and the log."""
    if start_method == "fork":
        settings = container.settings
        env = {
            **os.environ,
            "OMNICRM_DATABASE_URL": settings.database_url,
            "OMNICRM_CATALOGUE_FILE": str(settings.catalogue_file),
            "OMNICRM_SCENARIOS_DIR": str(settings.scenarios_dir),
            "OMNICRM_ENV": settings.env,
        }
        done = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS, NOW.isoformat()],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return Report.of(json.loads(done.stdout.splitlines()[-1])), done.stderr
    # a process with a second thread running (the worker's campaign scheduler) spawns them
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="a scheduler")
    thread.start()
    handler, logger = _Remember(), logging.getLogger("omnicrm.catchup")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        report = catch_up(container, processes=2, min_events=0, limit=97, backlog_limit=97, now=NOW)
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        stop.set()
        thread.join()
    return report, "\n".join(handler.lines)


class _Remember(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_two_processes_decide_what_one_does(loaded: Container, start_method: str) -> None:
    # in small batches (97 events) against one batch of all 1,800: neither changes what is decided
    parallel, log = _parallel(loaded, start_method)
    assert f"split among 2 processes ({start_method})" in log
    split = _outcome(loaded)
    assert _decider_offsets(loaded) == {decider.CONSUMER: _newest(loaded)}  # folded back

    _forget_decisions(loaded)
    single = catch_up(loaded, processes=1, now=NOW)

    assert parallel.decisions == single.decisions > 0
    assert parallel.events == single.events == 1800
    assert parallel.scanned == 2 * single.scanned  # each partition reads every event once
    assert split == _outcome(loaded)


def test_a_catch_up_left_behind_is_finished_before_newer_events(loaded: Container) -> None:
    reference = catch_up(loaded, processes=1, now=NOW)
    expected = _outcome(loaded)
    _forget_decisions(loaded)

    bound = decider.split(loaded.uow, 2)
    assert bound == _newest(loaded)
    # One partition got half-way, then its process died; the other never started.
    first = decider.consume(
        loaded.uow, loaded.library, limit=100, partition=Partition(0, 2), upto=bound, now=NOW
    )
    assert first.scanned == 200
    assert 0 < first.events < 200
    assert decider.consume(loaded.uow, loaded.library, now=NOW).scanned == 0  # the whole queue waits
    assert decider.split(loaded.uow, 2) is None  # and no second catch-up starts over the first

    finished = decider.drain(loaded.uow, loaded.library, now=NOW)

    assert finished.events == reference.events - first.events  # the rest of partition 0, all of 1
    assert _decider_offsets(loaded) == {decider.CONSUMER: bound}
    assert _outcome(loaded) == expected


def test_a_worker_that_lost_its_batch_to_another_writes_nothing(loaded: Container) -> None:
    """Two processes on one partition (a restarted one beside the old): each batch is written once."""
    bound = decider.split(loaded.uow, 2)
    assert bound is not None
    part = Partition(1, 2)
    first = decider.consume(loaded.uow, loaded.library, limit=200, partition=part, upto=bound, now=NOW)
    with loaded.reader() as conn:
        at = offsets.offsets_of(conn, decider.consumer_of(part))[decider.consumer_of(part)]
    assert first.scanned == 400  # a partition reads `limit` events per partition
    assert at > 0
    decider.drain(loaded.uow, loaded.library, now=NOW)
    with loaded.reader() as conn:
        # a first decision, and each step it held, skipped or cancelled, once (the step's is named)
        twice = conn.execute(
            select(decisions.c.event_id, decisions.c.scenario_id, decisions.c.step, func.count())
            .group_by(decisions.c.event_id, decisions.c.scenario_id, decisions.c.step)
            .having(func.count() > 1)
        ).all()
    assert twice == []


def test_partition_counts_outside_the_list_are_refused(loaded: Container) -> None:
    with pytest.raises(ValueError, match="3 is not one of"):
        catch_up(loaded, processes=3)
    assert _decider_offsets(loaded) == {}
