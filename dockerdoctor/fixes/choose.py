"""`fix`, phase 1: choose one Fix per finding (TLS with --ca, insecure-registries with its CIS 2.4
warning), configuration repairs first.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

from dockerdoctor.engine import repair_rank
from dockerdoctor.model import (
    Finding,
    Fix,
    Operation,
    ReplaceFileContent,
    Severity,
)


@dataclass
class Choice:
    finding: Finding
    fix: Fix | None  # None: nothing this run can apply for the finding
    notes: list[str] = field(default_factory=list)  # why an alternative was chosen, what is missing


def choose_fixes(
    findings: list[Finding],
    ca_pem: str | None = None,
    insecure: bool = False,
    min_severity: Severity = Severity.WARNING,
    dropins: list[str] | None = None,
) -> list[Choice]:
    """One Fix per finding, repair rules first.

    DD101 (registry not trusted): with --ca, the CA goes into certs.d (no restart). With --insecure,
    or for a plain-HTTP registry when no CA was given, the insecure-registries alternative is
    chosen and its CIS 2.4 warning kept. A TLS registry with an unknown CA and neither option
    cannot be fixed without the CA, so the step says so.
    """
    out: list[Choice] = []
    trusted: dict[tuple[str, str | None], str] = {}  # (registry, CA path) -> the rule whose step trusts it
    for f in sorted(findings, key=_order_key):
        fix = f.fix
        if fix is None:
            continue
        if f.severity < min_severity:  # info findings carry advice, never an automatic change
            out.append(
                Choice(f, None, [f"advice only ({f.severity.label}), never applied automatically: {fix.summary}"])
            )
            continue
        if fix.trust is not None:
            reg = fix.trust.registry
            key = (reg, fix.trust.ca_path)  # one step per registry and per certs.d that trusts it
            if key in trusted:
                out.append(Choice(f, None, [f"the [{trusted[key]}] step for {reg} repairs this too"]))
                continue
            trusted[key] = f.rule_id
            out.append(_choose_trust(f, fix, ca_pem, insecure))
            continue
        if not fix.operations:
            out.append(Choice(f, None, [f"no automatic fix: {fix.summary}"]))
            continue
        out.append(Choice(f, _last_dropin(fix, dropins or [])))
    return out


_DROPIN = re.compile(r"^(?P<dir>/etc/systemd/system/docker\.service\.d)/(?P<name>[^/]+\.conf)$")


def _last_dropin(fix: Fix, existing: list[str]) -> Fix:
    """A new docker.service drop-in must sort after the host's own drop-ins to take effect.

    systemd applies drop-ins in file-name order, so a fix's `10-exec.conf` next to the host's
    `override.conf` would be overridden by it. Rename such a new drop-in (it is a new file: the
    name is the fix's choice, not the host's) so that it comes last; the plan shows the new name.
    """
    names = sorted(os.path.basename(p) for p in existing)
    ops: list[Operation] = []
    for op in fix.operations:
        if isinstance(op, ReplaceFileContent):
            m = _DROPIN.match(op.path)
            if m and os.path.basename(op.path) not in names and any(n > m.group("name") for n in names):
                name = m.group("name")
                while any(n >= name for n in names):
                    name = "zz-" + name
                op = dataclasses.replace(op, path=f"{m.group('dir')}/{name}")
        ops.append(op)
    return dataclasses.replace(fix, operations=tuple(ops))


def _order_key(f: Finding) -> tuple[int, int, str]:
    return (repair_rank(f.rule_id), -int(f.severity), f.rule_id)


def _choose_trust(f: Finding, fix: Fix, ca_pem: str | None, insecure: bool) -> Choice:
    assert fix.trust is not None
    name, plain = fix.trust.registry, fix.trust.plain_http
    alt = fix.alternatives[0] if fix.alternatives else None
    if ca_pem is not None and not insecure:
        if plain:
            return Choice(
                f,
                None,
                [
                    f"--ca was given, but {name} speaks plain HTTP: a CA cannot help until the "
                    "registry serves TLS (dockerdoctor serve-registry --tls-self-signed), "
                    "or use --insecure"
                ],
            )
        path = fix.trust.ca_path or f"/etc/docker/certs.d/{name}/ca.crt"
        return Choice(
            f,
            Fix(
                f"Trust the given CA for {name} in {path} (read on every push, no restart)",
                (ReplaceFileContent(path, ca_pem, 0o644),),
                owner=fix.owner,
            ),
        )
    if alt is not None and alt.operations and (insecure or plain):
        notes = (
            []
            if insecure
            else [
                f"{name} speaks plain HTTP and no --ca was given, so the plan uses the "
                "insecure-registries alternative; " + fix.summary + " is the safer choice"
            ]
        )
        return Choice(f, alt, notes)
    return Choice(f, None, [f"{fix.summary}: give the registry's CA with --ca FILE, or choose --insecure"])
