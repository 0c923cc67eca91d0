"""What the SMPP adapter puts in submit_sm and reads out of deliver_sm, without a socket."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omnicrm.channels.smpp import DC_GSM7, DC_UCS2, ESM_UDHI, parse_deliver_sm, submit_parts
from omnicrm.channels.sms_feedback import DeliveryReceipt, Inbound
from omnicrm.channels.sms_text import gsm7_encode

NOW = datetime(2026, 12, 2, 19, 0, tzinfo=UTC)


def test_a_short_text_is_one_plain_part() -> None:
    (part,) = submit_parts("Hi €", reference=7)
    assert (part.short_message, part.data_coding, part.esm_class, part.sar) == (
        gsm7_encode("Hi €"),
        DC_GSM7,
        0,
        None,
    )


def test_udh_parts_share_a_reference_and_count_up() -> None:
    parts = submit_parts("я" * 140, reference=0x1FF)
    assert [p.short_message[:6] for p in parts] == [bytes((5, 0, 3, 0xFF, 3, i)) for i in (1, 2, 3)]
    assert {p.esm_class for p in parts} == {ESM_UDHI}
    assert {p.data_coding for p in parts} == {DC_UCS2}
    assert b"".join(p.short_message[6:] for p in parts).decode("utf-16-be") == "я" * 140


def test_sar_parts_carry_no_udh() -> None:
    parts = submit_parts("a" * 200, reference=0x1234, concatenation="sar")
    assert [p.sar for p in parts] == [(0x1234, 2, 1), (0x1234, 2, 2)]
    assert {p.esm_class for p in parts} == {0}
    assert b"".join(p.short_message for p in parts) == b"a" * 200


@pytest.mark.parametrize(
    ("text", "state", "status"),
    [
        (
            "id:abc sub:001 dlvrd:001 submit date:2612021900 done date:2612021901 stat:DELIVRD err:000",
            None,
            "delivered",
        ),
        ("id:abc sub:001 dlvrd:000 stat:UNDELIV err:034", None, "failed"),
        ("id:abc stat:EXPIRED err:000", None, "failed"),
        ("id:abc stat:ACCEPTD", None, "sent"),
        ("", 2, "delivered"),
        ("", 8, "failed"),
    ],
)
def test_receipts(text: str, state: int | None, status: str) -> None:
    receipt = parse_deliver_sm(
        esm_class=0x04,
        data_coding=0,
        short_message=text.encode(),
        source_addr="380501110001",
        destination_addr="OmniBank",
        receipted_message_id=None if text else "abc",
        message_state=state,
        now=NOW,
    )
    assert isinstance(receipt, DeliveryReceipt)
    assert (receipt.provider_id, receipt.status, receipt.key) == ("abc", status, None)
    assert receipt.provider_event_id.startswith("smpp:abc:")


def test_a_receipt_without_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="message id"):
        parse_deliver_sm(
            esm_class=0x04,
            data_coding=0,
            short_message=b"stat:DELIVRD",
            source_addr="1",
            destination_addr="2",
        )


@pytest.mark.parametrize(
    ("body", "coding", "esm", "text"),
    [
        ("СТОП".encode("utf-16-be"), DC_UCS2, 0, "СТОП"),
        (gsm7_encode("Stop {now}"), DC_GSM7, 0, "Stop {now}"),
        (bytes((5, 0, 3, 1, 2, 1)) + "Дякую".encode("utf-16-be"), DC_UCS2, ESM_UDHI, "Дякую"),
        ("café".encode("latin-1"), 3, 0, "café"),
    ],
)
def test_mo_texts(body: bytes, coding: int, esm: int, text: str) -> None:
    mo = parse_deliver_sm(
        esm_class=esm,
        data_coding=coding,
        short_message=body,
        source_addr="380671234567",
        destination_addr="7007",
        now=NOW,
    )
    assert isinstance(mo, Inbound)
    assert (mo.msisdn, mo.text, mo.to) == ("380671234567", text, "7007")
    again = parse_deliver_sm(
        esm_class=esm,
        data_coding=coding,
        short_message=body,
        source_addr="380671234567",
        destination_addr="7007",
        now=NOW,
    )
    assert again.provider_event_id == mo.provider_event_id  # a quick re-delivery is the same event
