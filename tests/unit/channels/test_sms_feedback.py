"""Kannel DLR and MO parsing and the STOP words, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omnicrm.channels.base import Outgoing
from omnicrm.channels.kannel import (
    KannelChannel,
    KannelConfig,
    dlr_signature,
    parse_dlr,
    parse_mo,
    verify_dlr,
)
from omnicrm.channels.sms_feedback import is_stop


@pytest.mark.parametrize(
    ("dlr_type", "status"),
    [("1", "delivered"), ("2", "failed"), ("4", "sent"), ("8", "sent"), ("16", "failed")],
)
def test_dlr_types_map_to_our_statuses(dlr_type: str, status: str) -> None:
    receipt = parse_dlr({"key": "k1", "status": dlr_type, "ts": "1796237252", "fid": "abc", "answer": "ACK"})
    assert receipt.key == "k1"
    assert receipt.status == status
    assert receipt.at == datetime.fromtimestamp(1796237252, UTC)
    assert receipt.provider_event_id == f"kannel:k1:{dlr_type}:abc"
    assert receipt.reason == "ACK"


@pytest.mark.parametrize(
    "params",
    [
        {"status": "1", "ts": "1"},  # no key
        {"key": "k", "status": "3", "ts": "1"},  # not a DLR type
        {"key": "k", "status": "%d", "ts": "1"},  # an unexpanded escape
    ],
)
def test_a_callback_that_is_not_ours_is_refused(params: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="DLR"):
        parse_dlr(params)


def test_the_same_receipt_replayed_has_the_same_event_id() -> None:
    params = {"key": "k", "status": "1", "ts": "5", "fid": "f"}
    assert parse_dlr(params).provider_event_id == parse_dlr(dict(params)).provider_event_id
    assert parse_dlr(params).provider_event_id != parse_dlr({**params, "status": "8"}).provider_event_id


def test_mo_parsing() -> None:
    inbound = parse_mo({"from": "+380671234567", "to": "7007", "text": "СТОП", "id": "u-1", "ts": "10"})
    assert (inbound.msisdn, inbound.text, inbound.to) == ("+380671234567", "СТОП", "7007")
    assert inbound.provider_event_id == "kannel:u-1"
    assert inbound.at == datetime.fromtimestamp(10, UTC)
    with pytest.raises(ValueError, match="MO"):
        parse_mo({"text": "hi", "id": "u-2"})


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        "Stop!",
        "  stop.  ",
        "СТОП",
        "стоп",
        " Стоп! ",
        "UNSUBSCRIBE",
        "ВІДПИСАТИСЯ",
        "«Стоп»",
        "CTOП",
    ],
)
def test_stop_words(text: str) -> None:
    assert is_stop(text)


@pytest.mark.parametrize(
    "text", ["", "stopped", "don't stop my card", "СТОП картку", "Дякую", "STOP 1234", "post", "5TOP"]
)
def test_not_stop_words(text: str) -> None:
    assert not is_stop(text)


def test_the_dlr_url_carries_the_key_and_its_signature() -> None:
    config = KannelConfig(
        "http://127.0.0.1:1/cgi-bin/sendsms", "u", "p", "Bank", dlr_url="https://crm/dlr", dlr_secret=b"s"
    )
    channel = KannelChannel("k", config)
    params = channel.params(Outgoing("key 1&x", "sms", "+380501", "uk", "Привіт"))
    channel.close()
    assert params["coding"] == "2"
    assert params["charset"] == "UTF-8"
    assert params["dlr-url"].startswith("https://crm/dlr?key=key+1%26x&sig=" + dlr_signature(b"s", "key 1&x"))
    assert params["dlr-url"].endswith("&status=%d&ts=%T&smsc=%i&answer=%A&fid=%F")
    assert verify_dlr({"key": "key 1&x", "sig": dlr_signature(b"s", "key 1&x")}, b"s")
    assert not verify_dlr({"key": "key 1&x", "sig": "0" * 64}, b"s")
