"""Helpers of the fleet tests (Prometheus, node-problem-detector, `report`, Ansible, `collect --script`).

``need(*binaries)`` skips a test off CI and fails it on CI when a binary is missing (the same policy
as ``@pytest.mark.real``, for tests that need a real tool but no lab). Artefacts a person may want to
look at after a run (the HTML report's screenshot) go to ``ARTIFACTS`` (``test-artifacts/`` in the
repository, or ``$DD_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "fixtures" / "hosts"
INTEGRATIONS = REPO / "integrations"
ARTIFACTS = Path(os.environ.get("DD_TEST_ARTIFACTS") or REPO / "test-artifacts")
DD = [sys.executable, "-m", "dockerdoctor"]
ON_CI = bool(os.environ.get("CI"))


def need(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        why = f"missing binaries: {', '.join(missing)} (run: sudo bash scripts/install-test-deps.sh)"
        if ON_CI:
            pytest.fail(f"cannot run on CI: {why}", pytrace=False)
        pytest.skip(why)


def dd(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
       **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (no colour, no DOCKER_HOST of the caller)."""
    env = {k: v for k, v in (env or os.environ).items() if k != "DOCKER_HOST"}
    env["NO_COLOR"] = "1"
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(REPO), **kw)  # type: ignore[call-overload]


def dd_here(*args: str) -> subprocess.CompletedProcess[str]:
    """The same CLI app run in this process (typer's CliRunner), for the side of a test that loops over
    every fixture only to read a report: a process each cost about 0.25 s, 113 times per test. The
    command a test is about (the one NPD or Prometheus runs) still runs as a process."""
    from typer.testing import CliRunner

    from dockerdoctor.cli import app

    r = CliRunner(mix_stderr=False).invoke(app, list(args), env={"NO_COLOR": "1", "DOCKER_HOST": None})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess([*DD, *args], r.exit_code, r.stdout, r.stderr)
