"""SMS over SMPP 3.4 straight to an operator's SMSC, with `smpplib`.

Why next to Kannel: some operators only offer SMPP, and a second route is what failover needs.
One transceiver bind carries submits out and receipts / MO texts in. Texts are split by
sms_text (smpplib's own splitter can cut an escape sequence or a surrogate pair in two) and
sent as GSM-7 (data_coding 0, unpacked septets) or UCS-2 (data_coding 8), long ones linked by
a UDH (esm_class 0x40) or by SAR TLVs. The `message_id` of the first part's submit_sm_resp is
the provider id; receipts name it (SMPP has no room for our idempotency key).

A listener thread reads every PDU (responses, deliver_sm, enquire_link); `send` writes under a
lock and waits for its responses. deliver_sm is parsed and handed to `on_feedback`; if that
raises, the SMSC is told to retry (ESME_RX_T_APPN) instead of the receipt being lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import smpplib.client  # type: ignore[import-untyped]
import smpplib.exceptions  # type: ignore[import-untyped]
import smpplib.smpp  # type: ignore[import-untyped]

from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Transient
from omnicrm.channels.sms_feedback import DeliveryReceipt, Inbound, ReceiptStatus
from omnicrm.channels.sms_text import gsm7_decode, gsm7_encode, segments

log = logging.getLogger(__name__)

DC_GSM7 = 0x00
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
ESM_UDHI = 0x40
ESM_RECEIPT = 0x04  # deliver_sm message type: SMSC delivery receipt
ESME_RX_T_APPN = 0x64  # "temporary application error": the SMSC delivers again later
# command_status values that say "later", not "never" (SMPP 3.4 section 5.1.3).
TRANSIENT_STATUS = frozenset({0x08, 0x14, 0x45, 0x58, 0x64})
RECEIPT_STATES: dict[str, ReceiptStatus] = {
    "DELIVRD": "delivered",
    "ACCEPTD": "sent",
    "ENROUTE": "sent",
    "UNKNOWN": "sent",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNDELIV": "failed",
    "REJECTD": "failed",
}
# message_state TLV values (SMPP 3.4 section 5.2.28) as receipt stat words.
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    8: "REJECTD",
}
_FIELD = re.compile(r"\b(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)
Feedback = DeliveryReceipt | Inbound


@dataclass(frozen=True, slots=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    source_addr: str  # the sender id
    source_addr_ton: int = 5  # alphanumeric; 1 (international) for a numeric sender
    source_addr_npi: int = 0
    dest_addr_ton: int = 1  # international: MSISDNs go as 380..., without '+'
    dest_addr_npi: int = 1
    system_type: str = ""
    concatenation: Literal["udh", "sar"] = "udh"
    max_segments: int = 10
    response_timeout: float = 10.0
    idle_timeout: float = 30.0  # enquire_link after this long without traffic


@dataclass(frozen=True, slots=True)
class SubmitPart:
    """One submit_sm as it goes on the wire (public so it can be checked without a socket)."""

    short_message: bytes
    data_coding: int
    esm_class: int
    sar: tuple[int, int, int] | None = None  # (reference, total, sequence number)


def submit_parts(text: str, reference: int, concatenation: Literal["udh", "sar"] = "udh") -> list[SubmitPart]:
    """The submit_sm payloads for `text`: coding from sms_text, long texts in linked parts."""
    split = segments(text)
    coding = DC_GSM7 if split.coding == "gsm7" else DC_UCS2
    encoded = [gsm7_encode(p) if coding == DC_GSM7 else p.encode("utf-16-be") for p in split.parts]
    if len(encoded) == 1:
        return [SubmitPart(encoded[0], coding, 0)]
    total, ref = len(encoded), reference & 0xFF
    if concatenation == "sar":
        return [
            SubmitPart(body, coding, 0, (reference & 0xFFFF, total, i)) for i, body in enumerate(encoded, 1)
        ]
    return [
        SubmitPart(bytes((5, 0, 3, ref, total, i)) + body, coding, ESM_UDHI)
        for i, body in enumerate(encoded, 1)
    ]


def decode_short_message(data: bytes, data_coding: int, esm_class: int) -> str:
    """The text of a deliver_sm: UDH stripped, decoded by its data_coding."""
    if esm_class & ESM_UDHI and data:
        data = data[1 + data[0] :]
    coding = data_coding & 0x0F if data_coding & 0xF0 == 0 else data_coding
    if coding == DC_UCS2:
        return data.decode("utf-16-be", "replace")
    if coding == DC_LATIN1:
        return data.decode("latin-1")
    return gsm7_decode(data)


def parse_deliver_sm(
    *,
    esm_class: int,
    data_coding: int,
    short_message: bytes,
    source_addr: str,
    destination_addr: str,
    receipted_message_id: str | None = None,
    message_state: int | None = None,
    now: datetime | None = None,
) -> Feedback:
    """A deliver_sm as a `DeliveryReceipt` (esm_class says "receipt") or an `Inbound` text.

    The receipt's fields come from the TLVs when present, else from the SMPP 3.4 Appendix B text
    ("id:... stat:DELIVRD err:000 ..."). An MO has no id of its own in SMPP: its event id hashes
    sender, recipient, bytes and the minute it came, which folds the SMSC's quick re-deliveries."""
    arrived = now or datetime.now(UTC)
    text = decode_short_message(short_message, data_coding, esm_class)
    if esm_class & 0x3C == ESM_RECEIPT:
        fields = {k.lower(): v for k, v in _FIELD.findall(text)}
        message_id = receipted_message_id or fields.get("id", "")
        stat = MESSAGE_STATES.get(message_state or 0) or fields.get("stat", "UNKNOWN").upper()
        if not message_id:
            raise ValueError("delivery receipt without a message id")
        status = RECEIPT_STATES.get(stat, "sent")
        reason = stat if fields.get("err", "000").strip("0") == "" else f"{stat} err:{fields['err']}"
        event = f"smpp:{message_id}:{stat}"
        return DeliveryReceipt(None, status, event, arrived, reason, message_id)
    digest = hashlib.sha256(
        f"{source_addr}|{destination_addr}|{arrived:%Y%m%d%H%M}".encode() + short_message
    ).hexdigest()[:32]
    return Inbound(source_addr, text, f"smpp:mo:{digest}", destination_addr or None, arrived)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\x00")
    return "" if value is None else str(value)


class SmppChannel(Channel):
    channel: ClassVar[str] = "sms"

    def __init__(
        self,
        provider: str,
        config: SmppConfig,
        *,
        on_feedback: Callable[[Feedback], None] | None = None,
        rate_per_second: float | None = None,
    ) -> None:
        super().__init__(provider, rate_per_second=rate_per_second)
        self.config = config
        self.on_feedback = on_feedback
        self._client: Any = None
        self._listener: threading.Thread | None = None
        self._lock = threading.Lock()
        self._answers: dict[int, tuple[int, str]] = {}
        self._answered = threading.Condition()
        self._broken: str | None = None
        self._references = itertools.count(int(time.time()) & 0xFFFF)

    def _send(self, message: Outgoing) -> SendResult:
        parts = submit_parts(message.body, next(self._references), self.config.concatenation)
        if len(parts) > self.config.max_segments:
            return Permanent(
                f"{len(parts)} SMS segments; {self.provider} sends at most {self.config.max_segments}"
            )
        try:
            with self._lock:
                self._ensure_bound()
                sequences = [self._submit(message.to, part) for part in parts]
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError) as exc:
            self._reset(f"{type(exc).__name__}: {exc}")
            return Transient(f"{self.provider}: {type(exc).__name__}: {exc}"[:300])
        answers = [self._answer(seq) for seq in sequences]
        failed = next(((status, mid) for status, mid in answers if status != 0), None)
        if failed is not None:
            reason = f"{self.provider}: submit_sm status 0x{failed[0]:02X}"
            return Transient(reason) if failed[0] in TRANSIENT_STATUS else Permanent(reason)
        ids = [mid for _, mid in answers]
        return Accepted(self.provider, ids[0], {"segments": len(parts), "message_ids": ",".join(ids)})

    def _submit(self, to: str, part: SubmitPart) -> int:
        cfg = self.config
        extra: dict[str, Any] = {}
        if part.sar:
            extra = {"sar_msg_ref_num": part.sar[0], "sar_total_segments": part.sar[1]}
            extra["sar_segment_seqnum"] = part.sar[2]
        pdu = self._client.send_message(
            source_addr_ton=cfg.source_addr_ton,
            source_addr_npi=cfg.source_addr_npi,
            source_addr=cfg.source_addr,
            dest_addr_ton=cfg.dest_addr_ton,
            dest_addr_npi=cfg.dest_addr_npi,
            destination_addr=to.lstrip("+"),
            short_message=part.short_message,
            data_coding=part.data_coding,
            esm_class=part.esm_class,
            registered_delivery=True,
            **extra,
        )
        return int(pdu.sequence)

    def _answer(self, sequence: int) -> tuple[int, str]:
        """Wait for the submit_sm_resp of `sequence`; a lost link or no answer is "try later"."""
        deadline = time.monotonic() + self.config.response_timeout
        with self._answered:
            while sequence not in self._answers:
                left = deadline - time.monotonic()
                if self._broken or left <= 0:
                    return (0x08, "")  # ESME_RSYSERR: transient, the SMSC may or may not have it
                self._answered.wait(left)
            return self._answers.pop(sequence)

    def _ensure_bound(self) -> None:
        if self._client is not None and not self._broken:
            return
        self._reset(None)
        with self._answered:
            self._answers.clear()  # answers of a dead bind will never be claimed
        client = smpplib.client.Client(
            self.config.host,
            self.config.port,
            timeout=self.config.idle_timeout,
            allow_unknown_opt_params=True,
        )
        client.set_message_sent_handler(self._on_response)
        client.set_error_pdu_handler(self._on_response)
        client.set_message_received_handler(self._on_deliver)
        client.connect()
        try:
            client.bind_transceiver(
                system_id=self.config.system_id,
                password=self.config.password,
                system_type=self.config.system_type,
            )
        except BaseException:
            client.disconnect()
            raise
        self._client, self._broken = client, None
        self._listener = threading.Thread(
            target=self._listen, args=(client,), name=f"smpp-{self.provider}", daemon=True
        )
        self._listener.start()
        log.info("smpp %s: bound to %s:%s", self.provider, self.config.host, self.config.port)

    def _listen(self, client: Any) -> None:
        try:
            while self._client is client:
                client.read_once()
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            if self._client is client:
                log.warning("smpp %s: link lost: %s", self.provider, type(exc).__name__)
                with self._answered:
                    self._broken = type(exc).__name__
                    self._answered.notify_all()

    def _on_response(self, pdu: Any, **_: Any) -> None:
        if pdu.command not in ("submit_sm_resp", "generic_nack"):
            return
        with self._answered:
            self._answers[int(pdu.sequence)] = (int(pdu.status), _text(getattr(pdu, "message_id", None)))
            self._answered.notify_all()

    def _on_deliver(self, pdu: Any, **_: Any) -> int:
        state = getattr(pdu, "message_state", None)
        try:
            feedback = parse_deliver_sm(
                esm_class=int(pdu.esm_class or 0),
                data_coding=int(pdu.data_coding or 0),
                short_message=bytes(pdu.short_message or b""),
                source_addr=_text(pdu.source_addr),
                destination_addr=_text(pdu.destination_addr),
                receipted_message_id=_text(getattr(pdu, "receipted_message_id", None)) or None,
                message_state=int(state) if state else None,
            )
        except ValueError:
            log.warning("smpp %s: unreadable deliver_sm seq %s", self.provider, pdu.sequence)
            return 0  # acknowledged: re-delivering what we cannot read helps no one
        if self.on_feedback is None:
            return 0
        try:
            self.on_feedback(feedback)
        except Exception:
            log.exception("smpp %s: feedback handler failed; the SMSC will deliver again", self.provider)
            return ESME_RX_T_APPN
        return 0

    def _reset(self, why: str | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            if why:
                log.warning("smpp %s: dropping the bind: %s", self.provider, why.split(":")[0])
            with contextlib.suppress(OSError):
                client.disconnect()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None  # detached first: the listener exits quietly
            if client is not None:
                if not self._broken:
                    with contextlib.suppress(
                        smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError
                    ):
                        client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
                with contextlib.suppress(OSError):
                    client.disconnect()
        if self._listener is not None:
            self._listener.join(timeout=5)
