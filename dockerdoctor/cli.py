"""Command-line interface (typer). Placeholder: the core commands land next."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dockerdoctor",
    help="Diagnose and repair docker hosts that cannot use a private registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register_subcommands() -> None:
    from dockerdoctor.registry import cli as registry_cli

    if hasattr(registry_cli, "register"):
        registry_cli.register(app)


def run() -> None:
    _register_subcommands()
    app()
