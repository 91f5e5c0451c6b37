"""serve-registry and registry subcommands. `register(app)` adds them to the main CLI."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach `serve-registry` and `registry` to the main typer app."""
