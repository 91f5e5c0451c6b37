"""systemd over D-Bus (dbus-python, an optional extra). None when there is no bus or no module."""

from __future__ import annotations

import os
from typing import Any

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
PROPS = ("Id", "ActiveState", "SubState", "NeedDaemonReload", "FragmentPath", "DropInPaths",
         "ActiveEnterTimestamp", "ExecMainStartTimestamp", "ExecMainPID", "Result")
SERVICE_PROPS = ("ExecStart", "EnvironmentFiles", "Environment", "ExecMainPID", "ExecMainStatus")


def _fmt_usec(v: Any) -> str:
    import datetime

    try:
        n = int(v)
    except (TypeError, ValueError):
        return str(v)
    if n == 0:
        return ""
    return datetime.datetime.fromtimestamp(n / 1e6, datetime.timezone.utc).strftime("%a %Y-%m-%d %H:%M:%S UTC")


def _to_show_format(unit_props: dict[str, Any], svc_props: dict[str, Any]) -> dict[str, str]:
    """Render D-Bus values in `systemctl show` text form, so one parser reads both."""
    out: dict[str, str] = {}
    for k in PROPS:
        if k not in unit_props:
            continue
        v = unit_props[k]
        if k == "NeedDaemonReload":
            out[k] = "yes" if bool(v) else "no"
        elif k == "DropInPaths":
            out[k] = " ".join(str(x) for x in v)
        elif k.endswith("Timestamp"):
            out[k] = _fmt_usec(v)
        else:
            out[k] = str(v)
    if "EnvironmentFiles" in svc_props:
        out["EnvironmentFiles"] = " ".join(
            f"{str(p)} (ignore_errors={'yes' if bool(ign) else 'no'})" for p, ign in svc_props["EnvironmentFiles"]
        )
    if "Environment" in svc_props:
        out["Environment"] = " ".join(str(x) for x in svc_props["Environment"])
    if "ExecStart" in svc_props:
        parts = []
        for entry in svc_props["ExecStart"]:
            path, argv = str(entry[0]), [str(a) for a in entry[1]]
            parts.append(f"{{ path={path} ; argv[]={' '.join(argv)} ; }}")
        out["ExecStart"] = " ".join(parts)
    if "ExecMainPID" in svc_props:
        out["ExecMainPID"] = str(int(svc_props["ExecMainPID"]))
    return out


def system_bus():  # type: ignore[no-untyped-def]
    """A private connection to the system bus named by DBUS_SYSTEM_BUS_ADDRESS (libdbus caches the
    address per process otherwise, so a bus that changed since the first call would be missed)."""
    import dbus  # type: ignore[import-not-found]
    import dbus.bus  # type: ignore[import-not-found]

    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if address:
        return dbus.bus.BusConnection(address)
    return dbus.SystemBus(private=True)


def read_unit_properties(unit: str, timeout: float = 1.0) -> dict[str, str] | None:
    if not (os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or os.path.exists("/run/dbus/system_bus_socket")):
        return None
    try:
        import dbus  # type: ignore[import-not-found]
    except ImportError:
        return None
    bus = None
    try:
        bus = system_bus()
        manager = dbus.Interface(bus.get_object(SYSTEMD, MANAGER_PATH), f"{SYSTEMD}.Manager")
        try:
            path = manager.GetUnit(unit, timeout=timeout)
        except dbus.DBusException:
            path = manager.LoadUnit(unit, timeout=timeout)
        obj = bus.get_object(SYSTEMD, path)
        props = dbus.Interface(obj, "org.freedesktop.DBus.Properties")
        unit_props = dict(props.GetAll(f"{SYSTEMD}.Unit", timeout=timeout))
        try:
            svc_props = dict(props.GetAll(f"{SYSTEMD}.Service", timeout=timeout))
        except dbus.DBusException:
            svc_props = {}
        return _to_show_format(unit_props, svc_props)
    except Exception:  # no bus, no systemd on it, access denied: fall back to systemctl
        return None
    finally:
        if bus is not None:
            bus.close()
