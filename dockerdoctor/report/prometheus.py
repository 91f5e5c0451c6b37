"""Prometheus text exposition for node_exporter's textfile collector (`check --format prometheus`,
`check --textfile-dir DIR`).

The metric set is small and stable: names and labels are only ever added (documented in
docs/prometheus.md, example alerts in integrations/prometheus/). No sample carries a timestamp
(the textfile collector refuses them); every series is a gauge. Series are unique by construction
(findings with the same id, severity and registry are counted in one sample), because node_exporter
drops a whole file with a duplicate series and raises `node_textfile_scrape_error`.

`write_textfile` writes `DIR/dockerdoctor.prom` the way node_exporter asks: a temporary name that
does not end in `.prom`, in the same directory, then an atomic rename.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from pathlib import Path

from dockerdoctor.errors import InputError
from dockerdoctor.model import RuleStatus, Severity
from dockerdoctor.report import Report

TEXTFILE_NAME = "dockerdoctor.prom"

# name -> help text. All gauges. Stable: never renamed or removed within schema 1.
METRICS: dict[str, str] = {
    "dockerdoctor_build_info": "dockerdoctor's version (the value is always 1).",
    "dockerdoctor_last_run_timestamp_seconds": "When the last check finished, in seconds since the Unix epoch.",
    "dockerdoctor_run_duration_seconds": "How long the last check took, in seconds.",
    "dockerdoctor_findings": "Findings of the last check by severity (0 when there are none).",
    "dockerdoctor_finding": "Findings of the last check by rule id, severity and registry "
                            "(registry is empty when the finding names none); the value counts them.",
    "dockerdoctor_rule_status": "Status of each selected rule in the last check: "
                                "passed, failed, skipped or crashed (the value is always 1).",
}

_STATUSES = (RuleStatus.PASSED, RuleStatus.FAILED, RuleStatus.SKIPPED, RuleStatus.CRASHED)


def _escape(value: str) -> str:
    """A label value as the exposition format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(round(float(v), 6))


def render(report: Report, now: float | None = None) -> str:
    """The report as Prometheus text exposition (format 0.0.4), ending in a newline."""
    now = time.time() if now is None else now
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name in METRICS}
    samples["dockerdoctor_build_info"].append((_labels(version=report.version), 1))
    samples["dockerdoctor_last_run_timestamp_seconds"].append(("", round(now, 3)))
    samples["dockerdoctor_run_duration_seconds"].append(("", round(report.seconds, 6)))
    for sev in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        samples["dockerdoctor_findings"].append((_labels(severity=sev.label), report.count(sev)))
    counted = Counter(
        (f.rule_id, f.severity.label, str(f.params.get("registry") or "")) for f in report.findings
    )
    for (rid, sev_label, registry), n in sorted(counted.items()):
        samples["dockerdoctor_finding"].append((_labels(id=rid, severity=sev_label, registry=registry), n))
    seen: set[str] = set()
    for r in sorted(report.results, key=lambda r: r.rule_id):
        if r.status not in _STATUSES or r.rule_id in seen:
            continue
        seen.add(r.rule_id)
        samples["dockerdoctor_rule_status"].append((_labels(id=r.rule_id, status=r.status.value), 1))
    out: list[str] = []
    for name, help_text in METRICS.items():
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples[name])
    return "\n".join(out) + "\n"


def write_textfile(report: Report, directory: Path, name: str = TEXTFILE_NAME, now: float | None = None) -> Path:
    """Write the metrics to DIRECTORY/NAME atomically (temp name + fsync + rename), mode 0644."""
    if not directory.is_dir():
        raise InputError(f"--textfile-dir {directory}: not a directory")
    target = directory / name
    tmp = directory / f".{name}.{os.getpid()}.tmp"  # not *.prom: node_exporter must never read it half-written
    data = render(report, now).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, 0o644)  # node_exporter runs as its own user and must read it
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"--textfile-dir {directory}: cannot write {name}: {exc.strerror}") from None
    return target
