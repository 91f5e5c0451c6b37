"""Service managers: how `fix --apply` reloads and restarts dockerd.

Three implementations of one small interface:

* :class:`DBusSystemd` talks to systemd over D-Bus (dbus-python, optional),
* :class:`Systemctl` runs ``systemctl``,
* :class:`CommandManager` is for hosts without systemd, and the tests: reload is SIGHUP to the
  dockerd PID, restart/start run the command the user gave with ``--restart-command``.

Every method raises :class:`ServiceError` with one readable line when the action fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

from dockerdoctor.errors import DoctorError

ACTIONS = ("daemon-reload", "reload", "restart", "start")


class ServiceError(DoctorError):
    """A reload or restart did not work."""


class ServiceManager:
    """The interface. `perform` dispatches on the action names used by ServiceAction."""

    description = "service manager"

    def daemon_reload(self) -> str:
        raise NotImplementedError

    def reload(self, unit: str = "docker.service") -> str:
        raise NotImplementedError

    def restart(self, unit: str = "docker.service") -> str:
        raise NotImplementedError

    def start(self, unit: str = "docker.service") -> str:
        return self.restart(unit)

    def perform(self, action: str, unit: str = "docker.service") -> str:
        if action == "daemon-reload":
            return self.daemon_reload()
        if action == "reload":
            return self.reload(unit)
        if action == "restart":
            return self.restart(unit)
        if action == "start":
            return self.start(unit)
        raise ValueError(f"unknown service action {action!r}")


class Systemctl(ServiceManager):
    description = "systemctl"

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout

    def _run(self, *args: str) -> str:
        try:
            proc = subprocess.run(
                ["systemctl", *args], capture_output=True, text=True, timeout=self.timeout, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServiceError(f"systemctl {' '.join(args)}: {exc}") from None
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise ServiceError(
                f"systemctl {' '.join(args)} failed (exit {proc.returncode}): {msg[-1] if msg else 'no output'}"
            )
        return f"systemctl {' '.join(args)}"

    def daemon_reload(self) -> str:
        return self._run("daemon-reload")

    def reload(self, unit: str = "docker.service") -> str:
        return self._run("reload", unit)

    def restart(self, unit: str = "docker.service") -> str:
        return self._run("restart", unit)

    def start(self, unit: str = "docker.service") -> str:
        return self._run("start", unit)


class DBusSystemd(ServiceManager):
    """org.freedesktop.systemd1 over the system bus; waits for each job to finish."""

    description = "systemd (D-Bus)"
    BUS = "org.freedesktop.systemd1"
    PATH = "/org/freedesktop/systemd1"
    MANAGER = "org.freedesktop.systemd1.Manager"

    def __init__(self, timeout: float = 120.0) -> None:
        import dbus  # optional dependency
        import dbus.bus

        self._dbus = dbus
        self.timeout = timeout
        try:
            # The address is read now (libdbus caches DBUS_SYSTEM_BUS_ADDRESS after its first use).
            address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/run/dbus/system_bus_socket"
            self.bus = dbus.bus.BusConnection(address)
            self.manager = dbus.Interface(self.bus.get_object(self.BUS, self.PATH), self.MANAGER)
        except dbus.DBusException as exc:
            raise ServiceError(f"cannot reach systemd over D-Bus: {exc.get_dbus_message()}") from None

    def _call(self, method: str, *args: str) -> str:
        try:
            job = getattr(self.manager, method)(*args)
        except self._dbus.DBusException as exc:
            raise ServiceError(f"systemd {method}{args}: {exc.get_dbus_message()}") from None
        if method != "Reload" and job:
            self._wait_job(str(job))
        return f"systemd {method} {' '.join(args)}".strip()

    def _wait_job(self, job_path: str) -> None:
        """A job object disappears when it finishes; poll until then."""
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            try:
                obj = self.bus.get_object(self.BUS, job_path)
                self._dbus.Interface(obj, "org.freedesktop.DBus.Properties").Get(
                    "org.freedesktop.systemd1.Job", "State"
                )
            except self._dbus.DBusException:
                return
            time.sleep(0.1)
        raise ServiceError(f"systemd job {job_path} did not finish in {self.timeout:.0f}s")

    def active_state(self, unit: str) -> str | None:
        try:
            path = self.manager.GetUnit(unit)
            props = self._dbus.Interface(self.bus.get_object(self.BUS, path), "org.freedesktop.DBus.Properties")
            return str(props.Get("org.freedesktop.systemd1.Unit", "ActiveState"))
        except self._dbus.DBusException:
            return None

    def _checked(self, method: str, unit: str) -> str:
        done = self._call(method, unit, "replace")
        state = self.active_state(unit)
        if state is not None and state not in ("active", "reloading", "activating"):
            raise ServiceError(f"{unit} is {state} after {method}")
        return done

    def daemon_reload(self) -> str:
        return self._call("Reload")

    def reload(self, unit: str = "docker.service") -> str:
        return self._checked("ReloadUnit", unit)

    def restart(self, unit: str = "docker.service") -> str:
        return self._checked("RestartUnit", unit)

    def start(self, unit: str = "docker.service") -> str:
        return self._checked("StartUnit", unit)


class CommandManager(ServiceManager):
    """No systemd: reload = SIGHUP to the dockerd PID; restart/start = the user's command.

    `pid_of` returns the PID of the dockerd this run works on (None when it is not running).
    """

    description = "signal + --restart-command"

    def __init__(self, restart_command: str | None, pid_of: Callable[[], int | None], timeout: float = 120.0) -> None:
        self.restart_command = restart_command
        self.pid_of = pid_of
        self.timeout = timeout
        self.last_output = ""

    def daemon_reload(self) -> str:
        return "daemon-reload: not needed (no systemd)"

    def perform(self, action: str, unit: str = "docker.service") -> str:
        if unit != "docker.service":
            raise ServiceError(f"cannot {action} {unit} without systemd (--restart-command only covers dockerd)")
        return super().perform(action, unit)

    def reload(self, unit: str = "docker.service") -> str:
        pid = self.pid_of()
        if pid is None:
            raise ServiceError("dockerd is not running, so it cannot be reloaded")
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise ServiceError(f"dockerd (PID {pid}) is gone") from None
        except PermissionError:
            raise ServiceError(f"not allowed to signal dockerd (PID {pid}): run as root") from None
        return f"kill -HUP {pid}"

    def restart(self, unit: str = "docker.service") -> str:
        if not self.restart_command:
            raise ServiceError("dockerd needs a restart, but this host has no systemd: give --restart-command CMD")
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", self.restart_command],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(f"--restart-command did not finish in {self.timeout:.0f}s") from None
        except OSError as exc:
            raise ServiceError(f"--restart-command: {exc}") from None
        self.last_output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            lines = self.last_output.splitlines()
            raise ServiceError(
                f"--restart-command failed (exit {proc.returncode})" + (f": {lines[-1]}" if lines else "")
            )
        return f"sh -c {self.restart_command!r}"


def choose_manager(restart_command: str | None, pid_of: Callable[[], int | None]) -> ServiceManager:
    """--restart-command wins; then systemd over D-Bus, then systemctl; else signals only."""
    if restart_command:
        return CommandManager(restart_command, pid_of)
    if os.path.isdir("/run/systemd/system"):
        try:
            return DBusSystemd()
        except (ImportError, ServiceError):
            pass
        if shutil.which("systemctl"):
            return Systemctl()
    return CommandManager(None, pid_of)
