"""Reports: one Report object, rendered as text, JSON (docs/report-schema.json) or JUnit XML."""

from __future__ import annotations

import contextlib
import enum
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dockerdoctor.errors import InputError
from dockerdoctor.model import Finding, RuleResult, RuleStatus, Severity

SCHEMA_VERSION = 1


class FailOn(str, enum.Enum):
    """The lowest severity that makes a run exit 1 (`--fail-on`)."""

    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


@dataclass
class Report:
    version: str
    target_kind: str  # "live" | "snapshot"
    target: str
    registries: list[str]
    results: list[RuleResult]
    fail_on: Severity | None  # None = never
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # live: the daemon inspected ({"host", "chosen_by", "pid"}), and where probes ran when that was not
    # the caller's own network namespace ({"netns", "pid", "description"})
    daemon: dict[str, object] | None = None
    probed_from: dict[str, object] | None = None
    host: str = ""  # the host's name (report/host.py); fleet reports group by it
    generated: str = ""  # when the report was made, ISO 8601 UTC

    @property
    def findings(self) -> list[Finding]:
        out = [f for r in self.results for f in r.findings]
        return sorted(out, key=lambda f: (-f.severity, f.rule_id))

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def status_count(self, status: RuleStatus) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def crashed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == RuleStatus.CRASHED]

    @property
    def exit_code(self) -> int:
        if self.crashed:
            return 3
        if self.fail_on is None:
            return 0
        return 1 if any(f.severity >= self.fail_on for f in self.findings) else 0


def write_output(text: str, output: Path | None) -> None:
    """Write a rendered report to stdout, or to FILE (`-o FILE` of check and report).

    FILE is replaced atomically: the text goes to a hidden temporary name beside it, which is renamed
    over FILE, so a reader never sees half a report; on any failure the temporary file is removed and
    FILE is left as it was. A FILE that exists and is not a regular file (/dev/null, /dev/stdout, a FIFO)
    is written in place: renaming over it would replace the device."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        mode = os.stat(output).st_mode
    except OSError:
        mode = stat.S_IFREG  # nothing there yet (or unreadable: the rename below says why)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise InputError(f"cannot write {output}: {exc.strerror}") from None
        return
    tmp: str | None = None
    try:
        # mkstemp: a new name opened O_EXCL, so a link planted in a shared directory is never followed
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), stat.S_IMODE(os.stat(output).st_mode) if output.is_file() else 0o666 & ~_umask())
            fh.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise InputError(f"cannot write {output}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
