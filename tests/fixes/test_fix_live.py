"""`dockerdoctor fix --apply` on a real dockerd 20.10 and a real registry in network namespaces.

Each test reproduces a failure, shows that the push fails, runs `fix --apply --yes` (inside the
simulated host's mount and network namespaces, with labsvc.py as the service manager), and then
shows that the push works."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.real("nsenter", "unshare")


def _ok(r) -> str:  # type: ignore[no-untyped-def]
    return f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


@pytest.mark.parametrize("config_file", [False, True], ids=["daemon.json", "--config-file"])
def test_plain_http_registry_gets_insecure_entry_and_sighup(fixlab, lab_host, config_file: bool) -> None:
    reg = fixlab.plain.hostport
    h = lab_host(daemon_json={"debug": False, "labels": ["site=lab"]}, config_file=config_file)
    assert h.start().returncode == 0
    pid = h.pid()
    push = h.push(reg)
    assert push.returncode != 0 and "server gave HTTP response to HTTPS client" in push.stderr
    r = h.dockerdoctor("fix", "--apply", "--yes", registry=reg)
    assert r.returncode == 0, _ok(r)
    assert "CIS Docker Benchmark 2.4" in r.stdout
    assert f"kill -HUP {pid}" in r.stdout
    assert h.pid() == pid  # reloaded, not restarted
    data = json.loads(h.config.read_text())
    assert list(data) == ["debug", "labels", "insecure-registries"] and data["insecure-registries"] == [reg]
    assert h.push(reg).returncode == 0
    # idempotent: a second run finds nothing to do
    again = h.dockerdoctor("fix", "--apply", "--yes", registry=reg)
    assert again.returncode == 0, _ok(again)
    assert "Nothing to" in again.stdout and "Backed up" not in again.stdout
