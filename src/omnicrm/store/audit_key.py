"""The key of the audit chain: which one a database is chained with, and where it comes from.

Production reads `OMNICRM_AUDIT_KEY` (settings refuse to start without it). Elsewhere, so that a
laptop or a test needs no setup, a file database gets a random key kept in `<database>.audit-key`
(mode 0600, created once, atomically); any other database (PostgreSQL in development or tests,
SQLite in memory) gets a key derived from its URL, which is not secret and only stops accidents."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import weakref
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from omnicrm.settings import Settings

_KEYS: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()
_DERIVATION = b"omnicrm audit key for development and tests only"


def use_key(engine: Engine, key: bytes) -> None:
    """Chain this engine's audit log with `key` (called once by bootstrap)."""
    _KEYS[engine] = key


def key_for(engine: Engine) -> bytes:
    """The engine's key; an engine not built by bootstrap gets the one its settings resolve to."""
    key = _KEYS.get(engine)
    if key is None:
        url = engine.url.render_as_string(hide_password=False)
        key = _KEYS[engine] = resolve(Settings(database_url=url))
    return key


def resolve(settings: Settings) -> bytes:
    """The configured key, else the development default described in the module docstring."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    if settings.env == "production":  # the settings already refuse this; never fall through
        raise RuntimeError("OMNICRM_AUDIT_KEY must be set when OMNICRM_ENV=production")
    url = make_url(settings.database_url)
    database = url.database or ""
    if (
        url.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and "mode=memory" not in str(url)
    ):
        return _key_file(Path(database + ".audit-key"))
    plain = url.set(password=None).render_as_string(hide_password=True)
    return hmac.new(_DERIVATION, plain.encode(), hashlib.sha256).hexdigest().encode()


def _key_file(path: Path) -> bytes:
    """Read the key file, creating it once (0600, written aside then linked: never half a key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        spare = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):  # another process made it first: theirs is it
                os.link(spare, path)
        finally:
            spare.unlink(missing_ok=True)
    return path.read_text().strip().encode()
