"""Message templates (scenarios/messages/*.yaml): per channel, in Ukrainian and English.

Texts are Jinja2 templates for the sandboxed environment; the loader
(services/conversations/datafiles.py) checks their
syntax so a marketer's typo is refused before anything is sent. Rendering belongs to the channels.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

Text = Annotated[str, StringConstraints(min_length=1, max_length=5000)]
_LIMITS = {"sms": 480, "webpush": 240}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MessageText(_Strict):
    subject: Text | None = None
    title: Text | None = None
    body: Text

    def parts(self) -> dict[str, str]:
        return {k: v for k, v in (("subject", self.subject), ("title", self.title), ("body", self.body)) if v}


class MessageSpec(_Strict):
    channel: Literal["email", "sms", "webpush", "inapp"]
    uk: MessageText
    en: MessageText

    @model_validator(mode="after")
    def _fits_channel(self) -> MessageSpec:
        for text in (self.uk, self.en):
            if self.channel == "email" and not text.subject:
                raise ValueError("an e-mail needs a subject")
            if self.channel == "webpush" and not text.title:
                raise ValueError("a web push needs a title")
            limit = _LIMITS.get(self.channel)
            if limit and len(text.body) > limit:
                raise ValueError(f"{self.channel} bodies are limited to {limit} characters")
        return self
