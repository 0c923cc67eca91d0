"""The SMPP adapter (smpplib) against a real SMPP 3.4 server: `smpp34`'s SMSC (an independent,
Rust implementation), run in a thread with its own event loop. It records every submit_sm as it
came off the wire, answers with a message id, sends a delivery receipt when one is asked for,
and can push an MO text to the bound session."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicrm.channels.base import Accepted, Outgoing, Permanent, Transient
from omnicrm.channels.smpp import DC_GSM7, DC_UCS2, ESM_UDHI, Feedback, SmppChannel, SmppConfig
from omnicrm.channels.sms_feedback import DeliveryReceipt, Inbound, is_stop
from omnicrm.channels.sms_text import gsm7_decode, segments

smpp34 = pytest.importorskip("smpp34")

CYRILLIC = "Шановний клієнте, ваша картка готова. Заберіть її у відділенні банку!!!"  # 71: 2 parts
LATIN = "Your card is ready {branch 12}. Fee: 5€. " * 5  # 2 parts of GSM-7 with escapes


class Smsc:
    """A live SMPP server on a free port."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.submits: list[Any] = []
        self.sessions: dict[str, Any] = {}
        self.reject: int | None = None
        self.ready = threading.Event()
        self.port = 0
        self._server: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self._pump = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)

    async def _start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server = smpp34.Server("127.0.0.1", self.port, system_id="TESTSMSC")
        await self._server.start()

    async def _serve(self) -> None:
        count = 0
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
            elif isinstance(event, smpp34.SubmitSmEvent):
                self.submits.append(event)
                if self.reject is not None:
                    event.reject(self.reject)
                    continue
                count += 1
                message_id = f"m{count}"
                event.accept(message_id)
                if event.registered_delivery & 1:
                    self.loop.create_task(self._receipt(event, message_id))

    async def _receipt(self, event: Any, message_id: str) -> None:
        dates = "submit date:2612021900 done date:2612021901"
        text = f"id:{message_id} sub:001 dlvrd:001 {dates} stat:DELIVRD err:000"
        await self.sessions[event.session_id].deliver_sm(
            event.source_addr, text.encode(), source_addr=event.destination_addr, esm_class=0x04
        )

    async def _stop(self) -> None:
        await self._server.stop()

    async def _mo(self, sender: str, text: str) -> None:
        session = next(iter(self.sessions.values()))
        await session.deliver_sm(
            "OmniBank", text.encode("utf-16-be"), source_addr=sender, data_coding=DC_UCS2
        )

    def mo(self, sender: str, text: str) -> None:
        asyncio.run_coroutine_threadsafe(self._mo(sender, text), self.loop).result(10)

    def stop(self) -> None:
        self._pump.cancel()
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def wait_for(check: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not check():
        time.sleep(0.02)
    return check()


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    server = Smsc()
    yield server
    server.stop()


@pytest.fixture
def feedback() -> list[Feedback]:
    return []


@pytest.fixture
def channel(smsc: Smsc, feedback: list[Feedback]) -> Iterator[SmppChannel]:
    config = SmppConfig("127.0.0.1", smsc.port, "omnicrm", "secret", "OmniBank", response_timeout=5)
    adapter = SmppChannel("smpp-a", config, on_feedback=feedback.append)
    yield adapter
    adapter.close()


def sms(key: str, body: str, to: str = "+380501110001") -> Outgoing:
    return Outgoing(idempotency_key=key, channel="sms", to=to, language="uk", body=body)


def reassemble(submits: list[Any], coding: int) -> list[str]:
    texts = []
    for s in submits:
        body = bytes(s.short_message)
        if s.esm_class & ESM_UDHI:
            body = body[1 + body[0] :]
        texts.append(body.decode("utf-16-be") if coding == DC_UCS2 else gsm7_decode(body))
    return texts


@pytest.mark.parametrize(("text", "coding"), [(CYRILLIC, DC_UCS2), (LATIN, DC_GSM7), ("Код 1234", DC_UCS2)])
def test_submit_sm_carries_coding_parts_and_receipt_request(
    channel: SmppChannel, smsc: Smsc, text: str, coding: int
) -> None:
    expected = segments(text)
    result = channel.send(sms("k1", text))

    assert isinstance(result, Accepted), result
    assert result.detail["segments"] == expected.count
    assert result.provider_id == "m1"
    got = smsc.submits
    assert len(got) == expected.count
    assert {s.data_coding for s in got} == {coding}
    assert {s.destination_addr for s in got} == {"380501110001"}
    assert all(s.registered_delivery & 1 for s in got)
    assert reassemble(got, coding) == list(expected.parts)
    if expected.count > 1:
        udhs = [bytes(s.short_message)[:6] for s in got]
        assert all(s.esm_class & ESM_UDHI for s in got)
        assert len({u[:4] for u in udhs}) == 1  # one reference
        assert [u[4:] for u in udhs] == [bytes([expected.count, i]) for i in range(1, expected.count + 1)]


def test_receipts_come_back_naming_the_provider_id(
    channel: SmppChannel, smsc: Smsc, feedback: list[Feedback]
) -> None:
    result = channel.send(sms("k2", "hello"))
    assert isinstance(result, Accepted)
    assert wait_for(lambda: any(isinstance(f, DeliveryReceipt) for f in feedback))
    receipt = next(f for f in feedback if isinstance(f, DeliveryReceipt))
    assert (receipt.provider_id, receipt.status, receipt.key) == (result.provider_id, "delivered", None)


def test_an_mo_stop_reaches_the_feedback_handler(
    channel: SmppChannel, smsc: Smsc, feedback: list[Feedback]
) -> None:
    assert isinstance(channel.send(sms("k3", "bind first")), Accepted)
    smsc.mo("380671234567", "  Стоп! ")
    assert wait_for(lambda: any(isinstance(f, Inbound) for f in feedback))
    inbound = next(f for f in feedback if isinstance(f, Inbound))
    assert inbound.msisdn == "380671234567"
    assert is_stop(inbound.text)


@pytest.mark.parametrize(("status", "kind"), [(0x58, Transient), (0x14, Transient), (0x0B, Permanent)])
def test_a_refused_submit_maps_to_its_kind(channel: SmppChannel, smsc: Smsc, status: int, kind: type) -> None:
    smsc.reject = status
    result = channel.send(sms("k4", "hello"))
    assert isinstance(result, kind), result
    assert f"0x{status:02X}" in result.reason  # type: ignore[union-attr]


def test_no_smsc_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = SmppChannel("smpp-down", SmppConfig("127.0.0.1", port, "omnicrm", "secret", "OmniBank"))
    try:
        assert isinstance(adapter.send(sms("k5", "hello")), Transient)
    finally:
        adapter.close()
