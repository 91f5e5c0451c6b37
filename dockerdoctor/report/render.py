"""One report, rendered in any of `check --format`'s formats."""

from __future__ import annotations

from dockerdoctor.report import Report

FORMATS = ("text", "json", "junit", "prometheus", "npd")


def render(report: Report, fmt: str, *, verbose: bool = False, color: bool | None = None,
           width: int | None = None) -> str:
    """`fmt` is one of FORMATS; verbose, color and width matter to the text report only. Each renderer is
    imported when asked for: a run loads the one it prints."""
    if fmt == "json":
        from dockerdoctor.report.jsonreport import render as render_json

        return render_json(report)
    if fmt == "junit":
        from dockerdoctor.report.junit import render as render_junit

        return render_junit(report)
    if fmt == "prometheus":
        from dockerdoctor.report import prometheus

        return prometheus.render(report)
    if fmt == "npd":
        from dockerdoctor.report import npd

        return npd.render(report)
    if fmt != "text":
        raise ValueError(f"unknown report format {fmt!r}")
    from dockerdoctor.report.text import render as render_text

    return render_text(report, verbose=verbose, color=color, width=width)
