"""What the Docker Engine API says after a fix: does dockerd answer, and can it reach a registry.
"""

from __future__ import annotations

import http.client
import re
import socket


def engine_ping(docker_host: str | None, timeout: float = 2.0) -> bool:
    host = docker_host or "unix:///var/run/docker.sock"
    try:
        if host.startswith("unix://"):
            conn: http.client.HTTPConnection = _UnixConn(host[len("unix://") :], timeout)
        elif host.startswith("tcp://"):
            h, _, p = host[len("tcp://") :].partition(":")
            conn = http.client.HTTPConnection(h, int(p or 2375), timeout=timeout)
        else:
            return False
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return False


class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


_REACHED = re.compile(
    r"manifest unknown|not found|does not exist|unauthorized|authentication required|"
    r"denied|no basic auth credentials",
    re.I,
)


def daemon_reaches_registry(docker_host: str | None, registry: str, timeout: float = 15.0) -> tuple[bool, str]:
    """Ask dockerd itself to pull an absent tag from `registry`.

    "not found" / "unauthorized" mean dockerd talked to the registry with its current trust
    settings; TLS or connection errors mean it still cannot.
    """
    import docker

    try:
        client = docker.APIClient(
            base_url=docker_host or "unix:///var/run/docker.sock", version="auto", timeout=timeout
        )
    except Exception as exc:  # the SDK raises many kinds
        return False, f"cannot reach the Engine API: {exc}"
    try:
        out = client.pull(f"{registry}/dockerdoctor-probe", tag="absent-tag", stream=False)
        text = str(out)
        if '"error"' in text and not _REACHED.search(text):
            return False, text[-300:]
        return True, "reached (pull answered)"
    except docker.errors.APIError as exc:
        msg = str(exc.explanation or exc)
        return bool(_REACHED.search(msg)), msg
    except Exception as exc:
        return False, f"{exc.__class__.__name__}: {exc}"
    finally:
        client.close()
