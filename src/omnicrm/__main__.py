"""`python -m omnicrm` runs the CLI."""

from omnicrm.cli import app

app()
