"""ASGI entry point for uvicorn (`omnicrm serve`): builds the app from the environment's settings."""

from __future__ import annotations

from fastapi import FastAPI

from omnicrm.api.app import create_app
from omnicrm.bootstrap import bootstrap


def app_factory() -> FastAPI:
    """Called once per worker process by uvicorn (factory=True)."""
    return create_app(bootstrap())
