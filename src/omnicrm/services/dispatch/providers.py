"""The channel adapters a dispatch worker runs with, built from the settings (README: channels).

A channel is active when its provider is configured; a message on an inactive channel waits,
queued, for a worker that has it (the backlog shows in /metrics). The internet-bank inbox and the
call-centre queue are omnicrm's own and always active."""

from __future__ import annotations

from omnicrm.channels.base import Channel
from omnicrm.channels.webpush import WebPushChannel, WebPushConfig
from omnicrm.settings import Settings


def channels_from(settings: Settings) -> dict[str, Channel]:
    found: dict[str, Channel] = {}
    if settings.vapid_private_key is not None:
        config = WebPushConfig(settings.vapid_private_key.get_secret_value(), settings.vapid_subject)
        found["webpush"] = WebPushChannel("webpush", config, rate_per_second=settings.webpush_rate)
    return found
