"""The catalog commands: `rules` lists the rules, `explain` tells what a rule or an error message means."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from dockerdoctor.cli.common import ListFormat, complete_rule_ids
from dockerdoctor.errors import InputError
from dockerdoctor.report import SCHEMA_VERSION


def rules_cmd(fmt: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.text) -> None:
    """List the rule catalog: id, name, default severity and title.

    Examples:

      dockerdoctor rules

      dockerdoctor rules --format json | jq -r '.rules[] | select(.category == "endpoint") | .id'

      dockerdoctor explain DD203   (what one rule checks, why it happens, how to fix it)
    """
    from dockerdoctor.engine import CATEGORIES, discover

    rules = discover()
    if fmt == ListFormat.json:
        import json

        typer.echo(json.dumps({"schema_version": SCHEMA_VERSION, "rules": [r.summary() for r in rules.values()]},
                              indent=2))
        return
    for cat, title in CATEGORIES.items():
        members = [r for r in rules.values() if r.category == cat]
        if not members:
            continue
        typer.echo(title)
        for r in members:
            typer.echo(f"  {r.id}  {r.name:<30} {r.severity.label:<8} {r.title}")


def explain(
    what: Annotated[str, typer.Argument(metavar="RULE|TEXT|-", autocompletion=complete_rule_ids,
                                        help="A rule id (DD104) or name, an error message, or - to read stdin.")],
    fmt: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.text,
) -> None:
    """Explain a rule, or what an error message means and what to do about it.

    Examples:

      dockerdoctor explain DD104

      docker push 10.0.0.5:5000/app 2>&1 | dockerdoctor explain -

      journalctl -u docker --no-pager | dockerdoctor explain --format json -

    The answer is a verdict (cause, possible, no known cause), the rules that fit with the lines
    they rest on, and the fix; stdin is read up to its last 1 MiB. Exit 0 a cause fits, 1 none
    does, 2 empty input or an unknown rule id.
    """
    from dockerdoctor.engine import discover

    rules = discover()
    key = what.strip()
    spec = rules.get(key.upper()) or next((r for r in rules.values() if r.name == key.lower()), None)
    if spec is not None:
        if fmt == ListFormat.json:
            import json

            typer.echo(json.dumps({**spec.summary(), "doc": spec.doc}, indent=2))
            return
        typer.echo(f"{spec.id} {spec.name} ({spec.severity.label}): {spec.title}\n")
        typer.echo(spec.doc)
        return
    if re.fullmatch(r"(?i)DD\d{3}", key):
        raise InputError(f"{key.upper()} is no rule id (see `dockerdoctor rules`)")
    from dockerdoctor import explain as kb  # the error-text knowledge base

    code = kb.explain_stdin(fmt.value) if key == "-" else kb.explain_text(what, fmt.value)
    raise typer.Exit(code)
