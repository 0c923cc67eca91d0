"""The benchmarks' `omnicrm serve` process: up when yielded, with the given settings, gone afterwards."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from omnicrm.bench.server import serving
from omnicrm.bootstrap import bootstrap
from omnicrm.settings import Settings


def test_serve_answers_inside_the_block_and_is_stopped_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    bootstrap(Settings(database_url=url), migrate=True).close()

    with serving(url, 1, decide_in_process="false") as port:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/me", timeout=5).status_code == 401

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
