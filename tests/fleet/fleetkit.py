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
