"""The data every rule, report and fix engine shares: severities, evidence, findings, fixes.

Everything here is plain data. A Fix is a list of operations that an engine can render as a
plan (unified diffs and commands), apply, verify and undo; nothing in this module touches a host.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class Severity(enum.IntEnum):
    """Ordered so that `a >= b` means "at least as bad as"."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (use error, warning or info)") from None


@dataclass(frozen=True)
class Evidence:
    """One piece of proof: where it was seen and what was seen there.

    `source` is a path on the inspected host (``/etc/sysconfig/docker``), a command
    (``docker info``), or an API (``Engine API /info``). `line` is 1-based when known.
    """

    source: str
    text: str = ""
    line: int | None = None

    def location(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "text": self.text}


# What a fact value says of where it came from is evidence as a finding shows it: a file or command, what was
# seen there, and the line. Every fact value type that knows its origin answers `value.evidence(text, line)`
# (the `Located` protocol), so a rule never rebuilds it from the type's own field names.
Provenance = Evidence


class Located(Protocol):
    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """Where this value came from, with `text` (default: the value as its source shows it) and `line`
        (default: the value's own line, when it has one)."""
        ...


# --------------------------------------------------------------------------- fix operations
# Each operation is data; dockerdoctor.fixes renders and (later) applies them.


@dataclass(frozen=True)
class JsonSetKey:
    """Set `key` in a JSON object file (daemon.json); other keys, their order and the mode survive."""

    path: str
    key: str
    value: Any
    kind: str = "json-set-key"


@dataclass(frozen=True)
class JsonListAdd:
    """Append `item` to the list under `key`, creating the file or key when missing."""

    path: str
    key: str
    item: Any
    kind: str = "json-list-add"


@dataclass(frozen=True)
class JsonRemoveKey:
    path: str
    key: str
    kind: str = "json-remove-key"


@dataclass(frozen=True)
class JsonRenameKey:
    path: str
    old: str
    new: str
    kind: str = "json-rename-key"


@dataclass(frozen=True)
class ReplaceFileContent:
    """Replace a whole file with `content` (a repaired daemon.json, a new drop-in, a ca.crt)."""

    path: str
    content: str
    mode: int = 0o644
    kind: str = "write-file"


@dataclass(frozen=True)
class EnvFileSet:
    """Set NAME=VALUE in an environment file, replacing the assignment in place.

    With `append`, VALUE is added as one more word at the end of the current value.
    """

    path: str
    name: str
    value: str
    append: bool = False
    kind: str = "env-set"


@dataclass(frozen=True)
class RunCommand:
    """A command the plan shows verbatim (firewall-cmd, semanage, docker run ...)."""

    argv: tuple[str, ...]
    description: str = ""
    kind: str = "command"

    def shell(self) -> str:
        import shlex

        return " ".join(shlex.quote(a) for a in self.argv)


@dataclass(frozen=True)
class ServiceAction:
    """daemon-reload, reload (SIGHUP) or restart of a unit."""

    action: str  # "daemon-reload" | "reload" | "restart" | "start"
    unit: str = "docker.service"
    kind: str = "service"

    def shell(self) -> str:
        if self.action == "daemon-reload":
            return "systemctl daemon-reload"
        return f"systemctl {self.action} {self.unit}"


Operation = (
    JsonSetKey
    | JsonListAdd
    | JsonRemoveKey
    | JsonRenameKey
    | ReplaceFileContent
    | EnvFileSet
    | RunCommand
    | ServiceAction
)


def operation_to_dict(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in op.__dataclass_fields__:
        value = getattr(op, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class Trust:
    """What a fix makes the daemon trust: one registry, through its CA in certs.d or, as the
    alternative, insecure-registries. The fixer takes one such step per registry, and picks TLS or
    insecure by the user's --ca / --insecure; `verify_by_probe` asks it to probe the registry again
    after applying (the finding was about what the daemon sees there)."""

    registry: str
    plain_http: bool = False
    verify_by_probe: bool = False
    # Where --ca writes the CA. None: dockerd's /etc/docker/certs.d/REGISTRY/ca.crt. Another client's
    # certs.d (podman's /etc/containers/certs.d/...) is a trust step of its own for the same registry.
    ca_path: str | None = None


@dataclass(frozen=True)
class Fix:
    """A least-privilege repair: a summary a person reads, and the operations an engine runs.

    `alternatives` are other honest choices (for example TLS instead of insecure-registries),
    each a Fix of its own. `warnings` are the costs the user must know before applying.
    """

    summary: str
    operations: tuple[Operation, ...] = ()
    warnings: tuple[str, ...] = ()
    alternatives: tuple[Fix, ...] = ()
    trust: Trust | None = None  # a trust step (not part of the JSON report: the operations say it)
    # (user, home): a fix in a user's home. Its files must resolve inside that home (else it is refused), and
    # what it creates is given to that user afterwards, without following any link (fixes/apply.py).
    owner: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "operations": [operation_to_dict(op) for op in self.operations],
            "warnings": list(self.warnings),
            "alternatives": [alt.to_dict() for alt in self.alternatives],
        }


@dataclass
class Finding:
    rule_id: str
    severity: Severity
    title: str
    message: str
    evidence: list[Evidence] = field(default_factory=list)
    fix: Fix | None = None
    # Set by the engine when --ignore demoted an error to a warning.
    demoted_from: Severity | None = None
    # Free-form parameters (host, port, file) for machine consumers.
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.rule_id,
            "severity": self.severity.label,
            "ignored": self.demoted_from is not None,
            "title": self.title,
            "message": self.message,
            "evidence": [e.to_dict() for e in self.evidence],
            "fix": self.fix.to_dict() if self.fix else None,
            "params": self.params,
        }


class RuleStatus(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # produced at least one finding
    SKIPPED = "skipped"
    NOT_SELECTED = "not-selected"
    CRASHED = "crashed"


@dataclass
class RuleResult:
    rule_id: str
    name: str
    category: str
    status: RuleStatus
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""  # why skipped / crashed
    basis: list[str] = field(default_factory=list)  # what a passed rule looked at (engine.passed_on)
    seconds: float = 0.0
    traceback: str = ""  # a crashed rule's traceback (shown with --debug)
