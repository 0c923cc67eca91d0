"""`omnicrm serve` runs the decision worker as a child process: rung by commits, it decides at once, and it
stops with serve."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from omnicrm.bootstrap import bootstrap
from omnicrm.services.access import auth
from omnicrm.settings import SHIPPED_CATALOGUE, SHIPPED_SCENARIOS, Settings
from omnicrm.store import offsets
from omnicrm.store.leader import DECIDER
from omnicrm.store.tables import events


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _workers_of(parent: int) -> list[int]:
    """Live `omnicrm worker` processes whose parent is `parent` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"worker" in command:
            found.append(int(entry.name))
    return found


def test_the_worker_process_decides_and_stops_with_serve(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    catalogue, scenarios = SHIPPED_CATALOGUE, SHIPPED_SCENARIOS
    container = bootstrap(
        Settings(database_url=url, catalogue_file=catalogue, scenarios_dir=scenarios), migrate=True
    )
    with container.uow() as uow:
        at = datetime.now(UTC)
        auth.create_user(
            uow.conn, username="ops", role="admin", password=None, branch=None, actor="t", now=at
        )
        token = auth.issue_token(uow.conn, username="ops", name="t", ttl=None, actor="t", now=at)
        uow.commit()
    port = _port()
    env = {
        **os.environ,
        "OMNICRM_DATABASE_URL": url,
        "OMNICRM_CATALOGUE_FILE": str(catalogue),
        "OMNICRM_SCENARIOS_DIR": str(scenarios),
        "OMNICRM_DECIDER_POLL_MS": "10000",  # a child that only polled would answer in up to 10 s
    }
    server = subprocess.Popen([sys.executable, "-m", "omnicrm", "serve", "--port", str(port)], env=env)
    try:
        assert _until(lambda: _healthy(port), 60)
        assert _until(lambda: _leader_lock_taken(tmp_path / "served.db"), 60)
        time.sleep(1)  # its first look found nothing: it waits now
        body = {
            "event_id": "served-1",
            "type": "tariff_page.visited",
            "occurred_at": datetime.now(UTC).isoformat(),
            "source": "web",
            "identifiers": {"cookie_id": "ck-served"},
            "attributes": {"product_class": "card", "page": "/cards"},
        }
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/events", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.text
        with container.reader() as conn:
            pk = conn.execute(select(events.c.id).where(events.c.event_id == "served-1")).scalar_one()

        def handled() -> bool:
            with container.reader() as conn:
                return offsets.offsets_of(conn, "decider").get("decider", 0) >= pk

        # nobody but the child process decides (the API workers do not), rung awake by the commit
        assert _until(handled, 5)
        assert len(_workers_of(server.pid)) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        container.close()
    assert _workers_of(server.pid) == []


def _leader_lock_taken(database: Path) -> bool:
    fd = os.open(f"{database}.lock-{DECIDER}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops the lock if this took it
    return False


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
