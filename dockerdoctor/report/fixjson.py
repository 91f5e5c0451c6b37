"""The file-level part of `fix --format json`: what each file holds before and after, and where the
backups of an applied run are. This is what the Ansible `fix` module turns into `diff` and `backup_file`.

Added to schema_version 1 of the fix JSON (fields are only ever added):

* `changed` (plan and apply): whether carrying the plan out changes anything on the host;
* `files`: one entry per file the plan changes: `path` (as the fix names it), `real` (where it is
  written, e.g. under /proc/PID/root or a snapshot copy), `existed`, `before` and `after` (UTF-8 text,
  cut at 256 KiB), `rules` (the rule ids that change it);
* `service`: the reload/restart of dockerd the plan needs (`action`, `daemon_reload`);
* `other_services`: the service actions it needs besides dockerd (`action`, `unit`: containerd after a
  config.toml edit, k3s after a registries.yaml edit);
* after `--apply`: `backup_dir` (the run's directory, with manifest.json) and `backups` (per file:
  `path`, `backup`, the copy of the original, or null for a file that did not exist).
"""

from __future__ import annotations

import json
from typing import Any

from dockerdoctor.report import SCHEMA_VERSION

MAX_TEXT = 256 * 1024


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    return data[:MAX_TEXT].decode("utf-8", errors="replace")


def plan_fields(prepared: Any) -> dict[str, Any]:
    """`changed`, `files` and `service` of a prepared plan (fixes.apply.Prepared), or nothing without one."""
    if prepared is None:
        return {}
    return {
        "changed": not prepared.empty,
        "files": [
            {"path": ch.path, "real": ch.real, "existed": ch.before is not None, "before": _text(ch.before),
             "after": _text(ch.after), "rules": list(ch.rules)}
            for ch in prepared.changes.values()
        ],
        "service": {"action": prepared.action, "daemon_reload": prepared.daemon_reload},
        "other_services": [{"action": a, "unit": u} for a, u in prepared.other_services],
    }


def backup_fields(store: Any, run_id: str | None) -> dict[str, Any]:
    """`backup_dir` and `backups` of an applied (or rolled-back) run; nothing when no run was made."""
    if not run_id:
        return {"backup_dir": None, "backups": []}
    rec = store.load(run_id)
    return {
        "backup_dir": str(rec.dir),
        "backups": [{"path": f.path, "backup": str(rec.dir / "files" / f.backup) if f.backup else None}
                    for f in rec.files],
    }


def apply_json(status: str, run_id: str | None, log: list[str], problems: list[str], prepared: Any,
               store: Any) -> str:
    """`fix --apply --format json`: the run's outcome, the plan's files and service, the backups."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "status": status, "run_id": run_id, "log": log,
                       "problems": problems, **plan_fields(prepared), **backup_fields(store, run_id)}, indent=2)
