"""One decision worker per database: a second process stands by until the first lets go."""

from __future__ import annotations

from omnicrm.bootstrap import Container
from omnicrm.store.leader import Leadership


def test_only_one_holder_at_a_time_and_release_hands_over(container: Container) -> None:
    first, second = Leadership(container.engine, key=99), Leadership(container.engine, key=99)
    try:
        assert first.acquire() is True
        assert first.acquire() is True  # already held: still true, nothing taken twice
        assert second.acquire() is False
        first.release()
        assert second.acquire() is True
        assert first.acquire() is False
    finally:
        first.release()
        second.release()


def test_other_roles_do_not_block_each_other(container: Container) -> None:
    decider, other = Leadership(container.engine, key=101), Leadership(container.engine, key=102)
    try:
        assert decider.acquire()
        assert other.acquire()
    finally:
        decider.release()
        other.release()
