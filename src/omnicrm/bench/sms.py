"""SMS/s through a real Kannel: `KannelChannel` -> smsbox -> bearerbox -> fakesmsc.

Why: issue 19 promises at least 1,000 SMS/s from one adapter instance. Two figures, because
they differ: how fast smsbox *accepts* (what dispatch waits for) and how fast the messages
*arrive* at the fake SMSC (what the gateway really pushes out). Texts alternate Latin (GSM-7)
and Cyrillic (UCS-2), each one segment, so the arrival count equals the message count.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from omnicrm.bench import kannel_peer
from omnicrm.channels.base import Accepted, Outgoing
from omnicrm.channels.kannel import KannelChannel, KannelConfig


def _message(i: int) -> Outgoing:
    body = f"Your code is {i:06d}" if i % 2 else f"Ваш код {i:06d}"
    return Outgoing(
        idempotency_key=f"bench-{i}", channel="sms", to=f"+38050{i:07d}", language="uk", body=body
    )


def run(n: int = 10_000, threads: int = 8, timeout: float = 120) -> dict[str, float | int]:
    """Start a peer, send `n` SMS over `threads` threads, and report the two rates."""
    with kannel_peer.running() as peer:
        config = KannelConfig(
            sendsms_url=peer.sendsms_url,
            username=kannel_peer.USERNAME,
            password=kannel_peer.PASSWORD,
            sender="OmniBank",
        )
        channel = KannelChannel("kannel-bench", config)
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(channel.send, map(_message, range(n)), chunksize=64))
            accept_seconds = time.perf_counter() - started
            accepted = sum(isinstance(r, Accepted) for r in results)
            deadline = time.monotonic() + timeout
            while peer.received_count() < accepted and time.monotonic() < deadline:
                time.sleep(0.05)
            arrive_seconds = time.perf_counter() - started
            received = peer.received_count()
        finally:
            channel.close()
    return {
        "sent": n,
        "threads": threads,
        "accepted": accepted,
        "accepted_per_s": round(accepted / accept_seconds, 1),
        "received_at_smsc": received,
        "received_per_s": round(received / arrive_seconds, 1),
        "seconds": round(arrive_seconds, 2),
    }


if __name__ == "__main__":
    print(run())
