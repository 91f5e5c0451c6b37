"""firewalld over D-Bus (org.fedoraproject.FirewallD1): the runtime and permanent zones as the daemon holds them."""

from __future__ import annotations

import os
from typing import Any

from dockerdoctor.facts.firewalld import FW_CONFIG_PATH, FW_NAME, FW_PATH, FirewalldState, FwZone


def _to_py(v: Any) -> Any:
    import dbus

    if isinstance(v, (dbus.String, dbus.ObjectPath)):
        return str(v)
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.Int32, dbus.UInt32, dbus.Int64, dbus.UInt64, dbus.Int16, dbus.UInt16, dbus.Byte)):
        return int(v)
    if isinstance(v, (dbus.Array, list, tuple, dbus.Struct)):
        return [_to_py(x) for x in v]
    if isinstance(v, (dbus.Dictionary, dict)):
        return {str(k): _to_py(x) for k, x in v.items()}
    return v


def _zone_from_settings(name: str, s: dict[str, Any], source: str) -> FwZone:
    return FwZone(
        name,
        target=str(s.get("target") or "default").replace("%%REJECT%%", "default"),
        interfaces=list(s.get("interfaces") or []),
        sources=list(s.get("sources") or []),
        services=list(s.get("services") or []),
        ports=[(str(p[0]), str(p[1])) for p in s.get("ports") or []],
        rich_rules=list(s.get("rules_str") or s.get("rich_rules") or []),
        source=source,
    )


def _settings_from_tuple(t: list[Any]) -> dict[str, Any]:
    """firewalld < 0.9 (RHEL 7) has only getZoneSettings/getSettings, a 16-field struct."""
    names = ("version", "short", "description", "unused", "target", "services", "ports", "icmp_blocks", "masquerade",
             "forward_ports", "interfaces", "sources", "rules_str", "protocols", "source_ports",
             "icmp_block_inversion")
    return dict(zip(names, t, strict=False))


def _zone_settings(zif: Any, fw: Any, name: str, timeout: float) -> dict[str, Any]:
    try:
        return dict(_to_py(zif.getZoneSettings2(name, timeout=timeout)))
    except Exception:
        return _settings_from_tuple(_to_py(fw.getZoneSettings(name, timeout=timeout)))


def system_bus_path() -> str | None:
    """The system bus socket's path (DBUS_SYSTEM_BUS_ADDRESS, else the default); None for other transports."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/var/run/dbus/system_bus_socket"
    first = address.split(";", 1)[0]
    if not first.startswith("unix:"):
        return None
    params = dict(p.partition("=")[::2] for p in first[len("unix:"):].split(","))
    return params.get("path")


def firewalld_over_dbus(timeout: float = 5.0) -> FirewalldState | None:
    """firewalld's runtime and permanent zones over D-Bus; None when the bus cannot be reached."""
    try:
        import dbus
        import dbus.bus
    except ImportError:
        return None

    # A private connection to the address in DBUS_SYSTEM_BUS_ADDRESS, read now: libdbus caches the
    # system bus address of its shared connection for the life of the process.
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/var/run/dbus/system_bus_socket"
    try:
        bus = dbus.bus.BusConnection(address)
    except Exception:
        return None
    try:
        try:
            owned = bool(bus.name_has_owner(FW_NAME))
        except Exception:
            return None
        if not owned:
            return FirewalldState(False, f"D-Bus: nobody owns {FW_NAME}", via="D-Bus")
        obj = bus.get_object(FW_NAME, FW_PATH)
        props = dbus.Interface(obj, "org.freedesktop.DBus.Properties")
        state = str(props.Get(FW_NAME, "state", timeout=timeout))
        fw = dbus.Interface(obj, FW_NAME)
        zif = dbus.Interface(obj, FW_NAME + ".zone")
        st = FirewalldState(state == "RUNNING", f"D-Bus {FW_NAME} state={state}", via="D-Bus")
        st.default_zone = str(fw.getDefaultZone(timeout=timeout))
        st.default_zone_source = "D-Bus getDefaultZone"
        active = _to_py(zif.getActiveZones(timeout=timeout))
        runtime: dict[str, FwZone] = {}
        for name in _to_py(zif.getZones(timeout=timeout)):
            s = _zone_settings(zif, fw, name, timeout)
            z = _zone_from_settings(name, s, f"D-Bus getZoneSettings2({name}) (runtime)")
            z.active = name in active
            z.default = name == st.default_zone
            runtime[name] = z
        st.runtime, st.runtime_source = runtime, "D-Bus getZoneSettings2 (runtime)"
        cobj = bus.get_object(FW_NAME, FW_CONFIG_PATH)
        cif = dbus.Interface(cobj, FW_NAME + ".config")
        permanent: dict[str, FwZone] = {}
        for name in _to_py(cif.getZoneNames(timeout=timeout)):
            path = cif.getZoneByName(name, timeout=timeout)
            zobj = bus.get_object(FW_NAME, path)
            zc = dbus.Interface(zobj, FW_NAME + ".config.zone")
            try:
                s = _to_py(zc.getSettings2(timeout=timeout))
            except Exception:
                s = _settings_from_tuple(_to_py(zc.getSettings(timeout=timeout)))
            permanent[name] = _zone_from_settings(name, s, f"D-Bus config.zone getSettings2({name}) (permanent)")
        st.permanent, st.permanent_source = permanent, "D-Bus config.zone getSettings2 (permanent)"
        names = {s for zs in (runtime, permanent) for z in zs.values() for s in z.services}
        for n in sorted(names):
            try:
                s = _to_py(fw.getServiceSettings2(n, dbus_interface=FW_NAME, timeout=timeout))
                st.services[n] = [(str(p[0]), str(p[1])) for p in s.get("ports") or []]
            except Exception:
                continue
        return st
    except Exception:
        return None
    finally:
        try:
            bus.close()
        except Exception:
            pass
