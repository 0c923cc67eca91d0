"""`python -m omnicrm` runs the CLI."""

from omnicrm.cli import app

if __name__ == "__main__":  # not when a worker process (spawned by the catch-up) imports this module
    app()
