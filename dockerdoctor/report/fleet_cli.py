"""`dockerdoctor report`: the command line of the fleet report (attached to the main app by dockerdoctor.cli)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from dockerdoctor.errors import InputError
from dockerdoctor.report import FailOn, write_output

REPORT_EXIT_CODES_HELP = (
    "Exit codes: 0 every host was checked and none has findings at or above --fail-on; 1 some host has, "
    "or could not be checked; 2 usage or input error (no such path, no host report at all)."
)


class FleetFormat(str, enum.Enum):
    text = "text"
    json = "json"
    html = "html"


def report(
    paths: Annotated[list[Path], typer.Argument(
        metavar="FILES_OR_DIRS...",
        help="JSON reports (`check --format json`, the Ansible module's output or facts, `ansible -t` tree "
             "files), or directories searched for *.json.")],
    fmt: Annotated[FleetFormat, typer.Option("--format", "-f", help="text, json (docs/fleet-report-schema.json) "
                                             "or html (one self-contained page).")] = FleetFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE",
                                                help="Write to FILE instead of stdout.")] = None,
    fail_on: Annotated[FailOn, typer.Option(
        "--fail-on", help="Lowest severity on any host that makes the exit code 1 (never: always 0).")
    ] = FailOn.error,
) -> None:
    """Merge many hosts' JSON reports into one fleet view: per finding the hosts that have it, per root
    cause (rule) a count, per registry the hosts checked against it, and the hosts that could not be
    checked.

    Examples:

      dockerdoctor report reports/                       (a directory of check --format json files)

      dockerdoctor report reports/ --format html -o fleet.html

      ansible all -m dockerdoctor.registry.check -t tree/ ; dockerdoctor report tree/ --format json
    """
    from dockerdoctor.report import fleet

    inputs = fleet.load(paths)
    if not inputs.hosts:
        why = "; ".join(f"{i['source']}: {i['reason']}" for i in inputs.ignored[:3]) or "no *.json files"
        raise InputError(f"no host report among the inputs ({why})")
    data = fleet.merge(inputs)
    if fmt == FleetFormat.json:
        text = fleet.render_json(data)
    elif fmt == FleetFormat.html:
        from dockerdoctor.report.html import render as render_html

        text = render_html(data)
    else:
        text = fleet.render_text(data)
    write_output(text, output)
    raise typer.Exit(fleet.exit_code(data, None if fail_on == FailOn.never else fail_on.value))


def register(app: typer.Typer) -> None:
    app.command("report", epilog=REPORT_EXIT_CODES_HELP)(report)
