"""The channel adapters a dispatch worker runs with, built from the settings (README: channels).

A channel is active when its provider is configured; a message on an inactive channel waits,
queued, for a worker that has it (the backlog shows in /metrics). The internet-bank inbox and the
call-centre queue are omnicrm's own and always active."""

from __future__ import annotations

from omnicrm.channels.base import Channel, Failover
from omnicrm.channels.email import EmailChannel, SmtpConfig
from omnicrm.channels.kannel import KannelChannel, KannelConfig
from omnicrm.channels.smpp import SmppChannel, SmppConfig
from omnicrm.channels.webpush import WebPushChannel, WebPushConfig
from omnicrm.settings import Settings, SmsProvider

DLR_PATH = "/v1/webhooks/kannel/dlr"


def channels_from(settings: Settings) -> dict[str, Channel]:
    found: dict[str, Channel] = {}
    if settings.smtp_host:
        smtp = SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            cafile=str(settings.smtp_cafile) if settings.smtp_cafile else None,
        )
        found["email"] = EmailChannel("smtp", smtp, rate_per_second=settings.email_rate)
    sms = [_sms(p, settings) for p in settings.sms_providers]
    if sms:
        found["sms"] = sms[0] if len(sms) == 1 else Failover(sms)
    if settings.vapid_private_key is not None:
        config = WebPushConfig(settings.vapid_private_key.get_secret_value(), settings.vapid_subject)
        found["webpush"] = WebPushChannel("webpush", config, rate_per_second=settings.webpush_rate)
    return found


def _sms(provider: SmsProvider, settings: Settings) -> Channel:
    password = provider.password.get_secret_value()
    if provider.kind == "smpp":
        assert provider.host is not None  # the settings check both
        assert provider.port is not None
        config = SmppConfig(provider.host, provider.port, provider.username, password, provider.sender)
        return SmppChannel(provider.name, config, rate_per_second=provider.rate)
    assert provider.url is not None
    kannel = KannelConfig(
        sendsms_url=provider.url,
        username=provider.username,
        password=password,
        sender=provider.sender,
        dlr_url=settings.public_url.rstrip("/") + DLR_PATH,
        dlr_secret=settings.feedback_key.get_secret_value().encode(),
        smsc=provider.smsc,
    )
    return KannelChannel(provider.name, kannel, rate_per_second=provider.rate)
