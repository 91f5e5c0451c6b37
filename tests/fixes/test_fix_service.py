"""Service managers: systemd over D-Bus (python-dbusmock serving org.freedesktop.systemd1), and the
signal + --restart-command manager for hosts without systemd."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockerdoctor.fixes.service import CommandManager, ServiceError, choose_manager

UNIT_PATH = "/org/freedesktop/systemd1/unit/docker_2eservice"


@pytest.fixture(scope="module")
def systemd_mock(tmp_path_factory: pytest.TempPathFactory):
    """Our own dbus-daemon and a dbusmock server: dbusmock's class-level bus cannot be started twice in
    one process, and tests/facts starts one too."""
    dbus = pytest.importorskip("dbus", reason="dbus-python is the optional [dbus] extra")
    dbusmock = pytest.importorskip("dbusmock")
    if not shutil.which("dbus-daemon"):
        pytest.skip("dbus-daemon is not installed")
    import lab

    d = tmp_path_factory.mktemp("bus")
    sock = d / "bus.sock"
    (d / "bus.conf").write_text(lab.BUS_CONF.format(sock=sock))
    address = f"unix:path={sock}"
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    busd = subprocess.Popen(
        ["dbus-daemon", "--config-file", str(d / "bus.conf"), "--nofork", "--nopidfile"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = None
    try:
        assert lab.wait_for(sock.exists, 10), "dbus-daemon did not start"
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dbusmock",
                "--system",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        conn = dbus.bus.BusConnection(address)
        assert lab.wait_for(lambda: conn.name_has_owner("org.freedesktop.systemd1"), 10), "dbusmock did not start"
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        mock = dbus.Interface(
            conn.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1"), dbusmock.MOCK_IFACE
        )
        mock.AddObject(
            UNIT_PATH, "org.freedesktop.systemd1.Unit", {"Id": "docker.service", "ActiveState": "inactive"}, []
        )
        mock.AddMethod("org.freedesktop.systemd1.Manager", "GetUnit", "s", "o", f'ret = "{UNIT_PATH}"')
        mock.AddMethod("org.freedesktop.systemd1.Manager", "Reload", "", "", "")
        for name in ("RestartUnit", "StartUnit", "ReloadUnit"):
            mock.AddMethod(
                "org.freedesktop.systemd1.Manager",
                name,
                "ss",
                "o",
                f'objects["{UNIT_PATH}"].UpdateProperties("org.freedesktop.systemd1.Unit", '
                f'{{"ActiveState": "active"}}); ret = "/org/freedesktop/systemd1/job/1"',
            )
        yield mock
    finally:
        for p in (server, busd):
            if p is not None:
                p.terminate()
                p.wait()
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


def test_dbus_manager_calls_systemd(systemd_mock) -> None:
    from dockerdoctor.fixes.service import DBusSystemd

    m = DBusSystemd(timeout=5)
    m.daemon_reload()
    m.perform("restart")
    m.perform("reload")
    calls = [(str(c[1]), [str(a) for a in c[2]]) for c in systemd_mock.GetCalls()]
    names = [c for c in calls if c[0] != "GetUnit"]
    assert names == [
        ("Reload", []),
        ("RestartUnit", ["docker.service", "replace"]),
        ("ReloadUnit", ["docker.service", "replace"]),
    ]
    assert m.active_state("docker.service") == "active"


def test_dbus_manager_reports_a_unit_that_failed(systemd_mock) -> None:
    from dockerdoctor.fixes.service import DBusSystemd

    systemd_mock.AddMethod(
        "org.freedesktop.systemd1.Manager",
        "RestartUnit",
        "ss",
        "o",
        f'objects["{UNIT_PATH}"].UpdateProperties("org.freedesktop.systemd1.Unit", '
        f'{{"ActiveState": "failed"}}); ret = "/org/freedesktop/systemd1/job/2"',
    )
    with pytest.raises(ServiceError, match="docker.service is failed after RestartUnit"):
        DBusSystemd(timeout=5).restart()


def test_command_manager_sighup_and_restart_command(tmp_path: Path) -> None:
    marker = tmp_path / "hup"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal,sys,time\n"
            f"signal.signal(signal.SIGHUP, lambda *a: open({str(marker)!r}, 'w').write('x'))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        m = CommandManager(f"echo restarted > {tmp_path / 'r'}", lambda: child.pid)
        assert m.reload() == f"kill -HUP {child.pid}"
        for _ in range(200):  # the handler runs asynchronously in the child
            if marker.exists():
                break
            time.sleep(0.01)
        assert marker.read_text() == "x"
        m.restart()
        assert (tmp_path / "r").read_text() == "restarted\n"
        assert m.daemon_reload().startswith("daemon-reload: not needed")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_command_manager_errors_are_one_line() -> None:
    with pytest.raises(ServiceError, match=r"failed \(exit 3\): dockerd said no"):
        CommandManager("echo starting; echo 'dockerd said no' >&2; exit 3", lambda: None).restart()
    with pytest.raises(ServiceError, match="not running"):
        CommandManager(None, lambda: None).reload()
    with pytest.raises(ServiceError, match="--restart-command"):
        CommandManager(None, lambda: 1).restart()
    with pytest.raises(ServiceError, match="firewalld.service without systemd"):
        CommandManager("true", lambda: 1).perform("start", "firewalld.service")


def test_restart_command_wins_over_systemd() -> None:
    assert isinstance(choose_manager("true", lambda: None), CommandManager)


def test_systemctl_manager_runs_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.fixes.service import Systemctl

    log = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n'
        'if [ "$1" = restart ]; then echo "Job for docker.service failed." >&2; exit 1; fi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    m = Systemctl(timeout=10)
    m.daemon_reload()
    m.perform("reload")
    with pytest.raises(ServiceError, match=r"systemctl restart docker.service failed \(exit 1\): Job for"):
        m.perform("restart")
    assert log.read_text().splitlines() == ["daemon-reload", "reload docker.service", "restart docker.service"]
