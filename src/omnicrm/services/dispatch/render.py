"""Message texts rendered for one person: the template's language version (the client's language,
Ukrainian when unknown), filled in by the sandboxed Jinja environment from the person's profile and
the event that started the conversation. A variable the text needs and the data lacks is an error
(`Unrenderable`), never an empty gap in a message to a client."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import Template, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from omnicrm.domain.messages import MessageSpec

LANGUAGES = ("uk", "en")


class _Required(Undefined):
    """A missing value may be tested (`{% if amount %}`) but never printed into a message."""

    __slots__ = ()

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # pragma: no cover - the line above raises


# Plain text out: the e-mail adapter escapes what goes into HTML, SMS and push take text as it is.
_JINJA = SandboxedEnvironment(autoescape=False, undefined=_Required, keep_trailing_newline=False)


class Unrenderable(ValueError):
    """The template cannot be filled in for this person (a missing value, a failing filter)."""


@functools.lru_cache(maxsize=2048)
def _compiled(text: str) -> Template:
    return _JINJA.from_string(text)


def language_of(preferred: str | None) -> str:
    return preferred if preferred in LANGUAGES else "uk"


def render(spec: MessageSpec, language: str, context: Mapping[str, Any]) -> dict[str, str]:
    """The template's parts (subject, title, body) in `language`, filled in from `context`."""
    text = getattr(spec, language_of(language))
    try:
        return {part: _compiled(source).render(context).strip() for part, source in text.parts().items()}
    except TemplateError as exc:
        raise Unrenderable(f"template cannot be rendered: {exc.message or type(exc).__name__}") from None
