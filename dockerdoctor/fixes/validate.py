"""`fix`, phase 3: judge the candidate before anything is written: the rules that validate a
configuration (`@rule(validates_config=True)`) on an overlay of the new contents, plus
`dockerd --validate` where the engine has it (23.0+).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile

from dockerdoctor import engine
from dockerdoctor.engine import config_validation_rules
from dockerdoctor.facts import Facts
from dockerdoctor.fixes.prepare import Prepared, is_daemon_json
from dockerdoctor.sources.base import Source
from dockerdoctor.sources.overlay import OverlaySource


def validate(prepared: Prepared, facts: Facts, state_dir: str | None = None) -> list[str]:
    """Problems the candidate would bring that the current files do not have. [] = good."""
    problems: list[str] = []
    if not prepared.changes:
        return problems
    overlay: dict[str, bytes] = {}
    for ch in prepared.changes.values():
        overlay[ch.path] = ch.after
        overlay[ch.real] = ch.after
    for ch in prepared.changes.values():
        if is_daemon_json(ch.path, facts):
            try:
                data = json.loads(ch.after)
                if not isinstance(data, dict):
                    problems.append(f"{ch.path}: the new content is not a JSON object")
            except ValueError as exc:
                problems.append(f"{ch.path}: the new content does not parse: {exc}")
    if problems:
        return problems
    options = dataclasses.replace(facts.options, network=False)
    select = config_validation_rules()

    def keys(src: Source) -> set[tuple[str, str]]:
        results = engine.run_rules(Facts(src, options), select)
        return {(f.rule_id, f.title) for r in results for f in r.findings if int(f.severity) >= 3}

    before = keys(facts.source)
    after = keys(OverlaySource(facts.source, overlay))
    for rid, title in sorted(after - before):
        problems.append(f"the change would bring a new {rid} error: {title}")
    if facts.live:
        problems += _dockerd_validate(prepared, facts, state_dir)
    return problems


_validate_supported: bool | None = None


def _dockerd_validate(prepared: Prepared, facts: Facts, state_dir: str | None) -> list[str]:
    """`dockerd --validate --config-file CANDIDATE` (engine 23.0+); skipped where the flag is unknown."""
    global _validate_supported
    dockerd = shutil.which("dockerd")
    if dockerd is None or _validate_supported is False:
        return []
    problems: list[str] = []
    for ch in prepared.changes.values():
        if not is_daemon_json(ch.path, facts):
            continue
        with tempfile.NamedTemporaryFile(
            "wb", suffix=".json", prefix="dd-validate-", dir=state_dir, delete=False
        ) as tmp:
            tmp.write(ch.after)
        try:
            proc = subprocess.run(
                [dockerd, "--validate", "--config-file", tmp.name],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return problems
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
        out = (proc.stdout + proc.stderr).strip()
        if "unknown flag: --validate" in out:
            _validate_supported = False
            return problems
        _validate_supported = True
        if proc.returncode != 0:
            lines = out.splitlines()
            problems.append(f"dockerd --validate rejects the new {ch.path}: {lines[-1] if lines else proc.returncode}")
    return problems


def dockerd_validate_supported() -> bool | None:
    """Whether this host's dockerd knows --validate (None: not asked yet)."""
    return _validate_supported
