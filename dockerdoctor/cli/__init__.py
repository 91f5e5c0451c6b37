"""dockerdoctor's command line (typer): the app, its wiring and the small commands.

The commands live beside this file: check_cmd (check), fix_cmd (fix and its backups), catalog_cmd
(rules, explain); common holds the shared options, --debug and the error boundary.

Exit codes (also in `dockerdoctor --help` and README):
  0  nothing at or above --fail-on
  1  findings at or above --fail-on
  2  usage error or bad input (a broken snapshot, an unknown rule id, ...)
  3  internal error (a bug: rerun with --debug for the traceback)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

from dockerdoctor import __version__
from dockerdoctor.errors import InputError

# typer < 0.16 imports rich (its help formatter and traceback printer, ~140 ms) whenever rich is installed,
# and pip installs it with typer. dockerdoctor uses neither (rich_markup_mode=None,
# pretty_exceptions_enable=False), so rich is hidden while typer loads; later imports of rich work as usual.
_hide_rich = "rich" not in sys.modules
if _hide_rich:
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
try:
    import typer
finally:
    if _hide_rich:
        del sys.modules["rich"]

from dockerdoctor.cli import catalog_cmd, check_cmd, fix_cmd  # noqa: E402  (after typer, loaded without rich)
from dockerdoctor.cli.common import DEBUG, EXIT_CODES_HELP, invoke  # noqa: E402

app = typer.Typer(
    name="dockerdoctor",
    help=(
        "Find why a docker host cannot push to or pull from a private registry, show the evidence, "
        "and name the least-privilege fix.\n\n"
        "Start with `dockerdoctor check` (this host) or `dockerdoctor check --root SOSREPORT`. "
        "`dockerdoctor fix` shows the repair plan; `dockerdoctor explain DD101` or "
        "`dockerdoctor explain \"<error text>\"` tells what something means.\n\n" + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_cb(value: bool) -> None:
    if value:
        typer.echo(f"dockerdoctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version_cb, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
) -> None:
    DEBUG.on = debug or bool(os.environ.get("DOCKERDOCTOR_DEBUG"))


# --------------------------------------------------------------------------- commands, in --help order

app.command(epilog=EXIT_CODES_HELP)(check_cmd.check)
app.command(epilog=fix_cmd.FIX_EXIT_CODES_HELP)(fix_cmd.fix)

# --------------------------------------------------------------------------- collect


@app.command()
def collect(
    out: Annotated[Path | None, typer.Argument(metavar="DIR", help="Directory to write (must be new or empty).")
                   ] = None,
    tar: Annotated[bool, typer.Option("--tar", help="Also pack DIR as DIR.tar.xz.")] = False,
    script: Annotated[bool, typer.Option(
        "--script", help="Print a POSIX sh script that gathers the same evidence without Python or a network, "
                         "for hosts that cannot run dockerdoctor; its tarball is for `check --root`.")] = False,
) -> None:
    """Write this host's docker evidence as a snapshot (sosreport layout) for `check --root` elsewhere.

    Copies the unit files, drop-ins, environment files, daemon.json, registries.conf, firewalld zones
    and certs.d (never private keys), and saves the diagnostic commands' output where sos puts it.
    Passwords, tokens and proxy credentials in them (`ps auxwww`, container Env, URLs with user:password)
    are replaced by `redacted-<hash>` (a salted hash; the --script collector numbers them, `redacted-<n>`);
    dockerdoctor-collect.txt says where.

    Example:

      sudo dockerdoctor collect /tmp/host-snap --tar && dockerdoctor check --root /tmp/host-snap.tar.xz

      dockerdoctor collect --script > collect.sh   (then, on the old host: sh collect.sh /tmp/snap)
    """
    if script:
        from dockerdoctor.collect_script import collect_specs, render_script

        sys.stdout.write(render_script(collect_specs()))  # the spec table, as a POSIX sh collector
        return
    if out is None:
        raise InputError("collect needs DIR, the directory to write (or --script)")
    from dockerdoctor.collect import collect as do_collect
    from dockerdoctor.collect import pack

    # Ordinary mistakes are one line and exit 2, not an internal error.
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory: give a new or empty directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise InputError(f"cannot create {out}: its parent {parent} does not exist or is not a directory")
    try:
        manifest = do_collect(out)
        typer.echo(f"collected {sum(1 for m in manifest if not m.startswith('error'))} items into {out}")
        if tar:
            typer.echo(f"packed {pack(out)}")
    except OSError as exc:
        raise InputError(f"cannot write the snapshot to {out}: {exc.strerror or exc}") from None


app.command("rules")(catalog_cmd.rules_cmd)
app.command()(catalog_cmd.explain)

# --------------------------------------------------------------------------- entry


def _register_subcommands() -> None:
    from dockerdoctor.report import fleet_cli

    fleet_cli.register(app)  # `report` (the fleet report)
    from dockerdoctor.registry import cli as registry_cli

    registry_cli.register(app)  # `serve-registry`
    from dockerdoctor import resolve_cmd

    resolve_cmd.register(app)  # `resolve IMAGE` (issue 15)


def _optional_rollback_value(argv: list[str]) -> list[str]:
    """`fix --rollback` without a RUN-ID means the last run (click options cannot have optional values)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--rollback" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "last")
            break
    return out


def _core_command(argv: list[str]) -> bool:
    """True when argv names one of this package's commands: the registry ones need not load (~5 ms)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    core = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return first is not None and first.replace("_", "-") in {n.replace("_", "-") for n in core}


def _debug_anywhere(args: list[str]) -> list[str]:
    """`--debug` is a top-level option; the internal-error hint says "rerun with --debug", and people put it
    after the subcommand (`dockerdoctor collect --debug X`). Move it to the front (never past a `--`)."""
    head = args[: args.index("--")] if "--" in args else args
    if "--debug" not in head[1:]:
        return args
    rest = args[len(head):]
    return ["--debug", *[a for a in head if a != "--debug"], *rest]


def run() -> None:
    sys.argv[1:] = _debug_anywhere(_optional_rollback_value(sys.argv[1:]))
    if not _core_command(sys.argv[1:]) or os.environ.get("_DOCKERDOCTOR_COMPLETE"):
        _register_subcommands()
    invoke(app)
