"""Writers of one SQLite file queue at a gate shared by threads and processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from sqlalchemy import text

from omnicrm.store.db import make_engine, write_gate
from omnicrm.store.uow import UnitOfWork
from omnicrm.store.write_gate import WriteGate


def _other_process_waits(path: str, started: Event, done: Queue[float]) -> None:
    gate = WriteGate(path)
    started.set()
    t0 = time.monotonic()
    with gate.held():
        done.put(time.monotonic() - t0)


def _spawned_waiter(path: str) -> tuple[BaseProcess, Event, Queue[float]]:
    ctx = multiprocessing.get_context("spawn")
    started: Event = ctx.Event()
    done: Queue[float] = ctx.Queue()
    process = ctx.Process(target=_other_process_waits, args=(path, started, done))
    process.start()
    assert started.wait(30)
    return process, started, done


def test_another_process_waits_until_the_holder_lets_go(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "x.db"))
    with gate.held():
        process, _, done = _spawned_waiter(str(tmp_path / "x.db"))
        time.sleep(0.5)
        assert done.empty()  # still waiting
    waited = done.get(timeout=30)
    process.join(30)
    assert waited >= 0.3
    gate.close()


def test_threads_of_one_process_take_turns_and_a_holder_may_reenter(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "x.db"))
    inside: list[str] = []
    overlap = threading.Event()

    def writer(name: str) -> None:
        for _ in range(50):
            with gate.held():
                if inside:
                    overlap.set()
                inside.append(name)
                with gate.held():  # nested in the same thread: no deadlock
                    time.sleep(0.0005)
                inside.remove(name)

    threads = [threading.Thread(target=writer, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not overlap.is_set()
    gate.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_queues_behind_its_parent(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "x.db"))
    with gate.held():
        pass  # the parent has its descriptor open before the fork
    ctx = multiprocessing.get_context("fork")
    done: Queue[float] = ctx.Queue()
    with gate.held():
        child = ctx.Process(target=_child_takes_inherited_gate, args=(gate, done))
        child.start()
        time.sleep(0.5)
        assert done.empty()  # the child does not slip in on the parent's open file
    assert done.get(timeout=30) >= 0.3
    child.join(30)
    gate.close()


def _child_takes_inherited_gate(gate: WriteGate, done: Queue[float]) -> None:
    t0 = time.monotonic()
    with gate.held():
        done.put(time.monotonic() - t0)


def test_write_units_pass_the_gate_and_readers_do_not(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    gate = write_gate(engine)
    assert gate is not None
    process_waited: list[float] = []
    with UnitOfWork(engine) as uow:
        uow.conn.execute(text("INSERT INTO t VALUES (1)"))
        process, _, done = _spawned_waiter(gate.path.removesuffix("-writers.lock"))
        with UnitOfWork(engine, write=False) as reader:  # a reader in the same thread is not held up
            assert reader.conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        time.sleep(0.3)
        assert done.empty()
        uow.commit()
    process_waited.append(done.get(timeout=30))
    process.join(30)
    assert process_waited[0] >= 0.2
    with pytest.raises(RuntimeError), UnitOfWork(engine):  # a failed unit lets the next writer in
        raise RuntimeError("boom")
    with UnitOfWork(engine) as uow:
        uow.conn.execute(text("INSERT INTO t VALUES (2)"))
        uow.commit()
    engine.dispose()


def test_no_gate_for_a_database_in_memory() -> None:
    engine = make_engine("sqlite://")
    assert write_gate(engine) is None
    engine.dispose()
