"""systemd's view of docker.service: over D-Bus (python-dbusmock serving org.freedesktop.systemd1)
and without D-Bus (systemctl show text)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from dockerdoctor.facts.systemd import SystemdUnitState, parse_systemctl_show


def _missing(what: str) -> None:
    # CI installs the [dbus,test] extras and dbus-daemon: there a missing piece is a failure, never a skip
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on CI", pytrace=False)
    pytest.skip(f"{what} is not installed (the optional [dbus] extra / Debian's dbus)", allow_module_level=True)


try:
    import dbus
    import dbusmock
except ImportError as exc:  # pragma: no cover - depends on the extras installed
    _missing(exc.name or "dbus-python")

UNIT_PATH = "/org/freedesktop/systemd1/unit/docker_2eservice"


@pytest.fixture(scope="module")
def systemd_mock():
    if not shutil.which("dbus-daemon"):
        _missing("dbus-daemon")
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    dbusmock.DBusTestCase.start_system_bus()
    proc = dbusmock.DBusTestCase.spawn_server("org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                              "org.freedesktop.systemd1.Manager", system_bus=True,
                                              stdout=subprocess.DEVNULL)
    try:
        bus = dbusmock.DBusTestCase.get_dbus(True)
        mock = dbus.Interface(bus.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1"),
                              dbusmock.MOCK_IFACE)
        mock.AddObject(UNIT_PATH, "org.freedesktop.systemd1.Unit", {
            "Id": "docker.service", "ActiveState": "active", "SubState": "running",
            "NeedDaemonReload": True, "FragmentPath": "/usr/lib/systemd/system/docker.service",
            "DropInPaths": dbus.Array(["/etc/systemd/system/docker.service.d/10-exec.conf"], signature="s"),
            "ActiveEnterTimestamp": dbus.UInt64(1_700_000_000_000_000),
        }, [])
        mock.AddMethod("org.freedesktop.systemd1.Manager", "GetUnit", "s", "o", f'ret = "{UNIT_PATH}"')
        unit = dbus.Interface(bus.get_object("org.freedesktop.systemd1", UNIT_PATH), dbusmock.MOCK_IFACE)
        unit.AddProperties("org.freedesktop.systemd1.Service", {
            "EnvironmentFiles": dbus.Array([dbus.Struct(("/etc/sysconfig/docker", True), signature="sb")],
                                           signature="(sb)"),
            "ExecStart": dbus.Array([dbus.Struct(("/usr/bin/dockerd-current",
                                                  ["/usr/bin/dockerd-current", "$OPTIONS", "$INSECURE_REGISTRY"],
                                                  False, dbus.UInt64(0), dbus.UInt64(0), dbus.UInt64(0),
                                                  dbus.UInt64(0), dbus.UInt32(0), 0, 0),
                                                 signature="sasbttttuii")], signature="(sasbttttuii)"),
            "ExecMainPID": dbus.UInt32(4242),
        })
        yield proc
    finally:
        proc.terminate()
        proc.wait()
        dbusmock.DBusTestCase.tearDownClass()
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


def test_reads_unit_over_dbus(systemd_mock):
    from dockerdoctor.facts.systemd_dbus import read_unit_properties

    props = read_unit_properties("docker.service")
    assert props is not None
    st = SystemdUnitState("dbus", props)
    assert st.active_state == "active"
    assert st.need_daemon_reload is True
    assert st.environment_files == [("/etc/sysconfig/docker", True)]
    assert st.exec_start_argv == [["/usr/bin/dockerd-current", "$OPTIONS", "$INSECURE_REGISTRY"]]
    assert st.dropin_paths == ["/etc/systemd/system/docker.service.d/10-exec.conf"]
    assert st.get("ExecMainPID") == "4242"


def test_dd108_fires_from_dbus_on_a_live_host(systemd_mock):
    from dockerdoctor.engine import run_rules
    from dockerdoctor.facts import CheckOptions, Facts
    from dockerdoctor.sources.live import LiveSource

    results = run_rules(Facts(LiveSource(), CheckOptions(network=False, docker_host="unix:///nonexistent.sock")),
                        select={"DD108"})
    dd108 = [r for r in results if r.rule_id == "DD108"][0]
    assert [f.rule_id for f in dd108.findings] == ["DD108"]
    assert "D-Bus" in dd108.findings[0].evidence[0].source


def test_without_dbus_falls_back_to_none(tmp_path):
    # libdbus caches the bus address per process, so ask from a fresh one.
    code = "from dockerdoctor.facts.systemd_dbus import read_unit_properties as r; print(r('docker.service'))"
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus.sock"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_systemctl_show_text_gives_the_same_view():
    text = ("Id=docker.service\nActiveState=active\nNeedDaemonReload=yes\nExecMainPID=4242\n"
            "EnvironmentFiles=/etc/sysconfig/docker (ignore_errors=yes)\n"
            "ExecStart={ path=/usr/bin/dockerd-current ; argv[]=/usr/bin/dockerd-current $OPTIONS "
            "$INSECURE_REGISTRY ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; "
            "status=0/0 }\n")
    st = SystemdUnitState("systemctl show", parse_systemctl_show(text))
    assert st.need_daemon_reload is True
    assert st.environment_files == [("/etc/sysconfig/docker", True)]
    assert st.exec_start_argv == [["/usr/bin/dockerd-current", "$OPTIONS", "$INSECURE_REGISTRY"]]
