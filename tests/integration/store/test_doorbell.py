"""The deciding process is woken by other processes' commits, per database."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from omnicrm.store import doorbell
from omnicrm.store.db import make_engine
from omnicrm.store.doorbell import Doorbell

pytestmark = pytest.mark.skipif(not doorbell.SUPPORTED, reason="abstract sockets are Linux only")


def _ring_later(url: str, delay_s: float) -> None:
    time.sleep(delay_s)
    Doorbell(make_engine(url)).ring()


def test_a_ring_from_another_process_ends_the_wait_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    bell = Doorbell(make_engine(url))
    assert bell.listen()
    ringer = multiprocessing.get_context("spawn").Process(target=_ring_later, args=(url, 1.0))
    ringer.start()
    started = time.monotonic()
    assert bell.wait(30.0)
    waited = time.monotonic() - started
    ringer.join(30)
    assert 0.5 < waited < 10  # woken by the ring, long before the timeout
    assert not bell.wait(0.2)  # that ring was used up
    bell.close()


def test_rings_meanwhile_count_once_and_other_databases_do_not_ring(tmp_path: Path) -> None:
    bell = Doorbell(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    same = Doorbell(make_engine(f"sqlite:///{tmp_path / '.' / 'a.db'}"))  # the same file, spelt otherwise
    other = Doorbell(make_engine(f"sqlite:///{tmp_path / 'b.db'}"))
    assert bell.listen()
    other.ring()
    assert not bell.wait(0.2)
    for _ in range(5):
        same.ring()
    assert bell.wait(1.0)
    assert not bell.wait(0.2)
    for b in (bell, same, other):
        b.close()


def test_only_one_listener_per_database_and_ringing_nobody_is_harmless(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    first, second = Doorbell(engine), Doorbell(engine)
    second.ring()  # nobody listens yet: nothing happens, nothing raised
    assert first.listen()
    assert not second.listen()
    assert not second.listening
    started = time.monotonic()
    assert not second.wait(0.2)  # not listening: it just sleeps the pause
    assert time.monotonic() - started >= 0.19
    first.close()
    assert second.listen()  # the address is free again once the listener is gone
    second.close()
