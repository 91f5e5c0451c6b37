"""Which daemon a live check inspects: the one behind the socket the docker CLI would use.

The socket comes from ``--docker-host``, else ``DOCKER_HOST``, else the current docker context
(``DOCKER_CONTEXT``, else ``currentContext`` in ``$DOCKER_CONFIG/config.json``, whose endpoint is in
``contexts/meta/<sha256 of the name>/meta.json``), else ``unix:///var/run/docker.sock``. That is the
docker CLI's own order, so dockerdoctor and ``docker info`` look at the same daemon.

The daemon's process is identified through the socket itself (``SO_PEERCRED`` on a connection to it),
never by looking for a process named dockerd: other dockerds on the host (a hand-started one,
docker-in-docker, a test lab's) serve other sockets and are not this host's daemon. A ``tcp://`` or
``ssh://`` daemon is on another host (or at least not identifiable here): its process, unit and
files are not this host's, and only what its Engine API reports is judged.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockerdoctor.errors import FactUnavailable, InputError
from dockerdoctor.facts import Facts, fact
from dockerdoctor.model import Provenance
from dockerdoctor.safetext import loads_json

if TYPE_CHECKING:
    import socket

# hashlib, json, socket and struct are imported where they are used: a snapshot run needs none of them.

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://")


@dataclass(frozen=True)
class DockerHost:
    url: str
    chosen_by: str  # "--docker-host" | "DOCKER_HOST" | "docker context NAME (PATH)" | "default"

    @property
    def is_unix(self) -> bool:
        return self.url.startswith("unix://")

    @property
    def path(self) -> str | None:
        return self.url[len("unix://"):] if self.is_unix else None

    @property
    def remote(self) -> bool:
        """Not a unix socket: the daemon cannot be identified on this host (usually it is on another one)."""
        return not self.is_unix

    @property
    def is_default(self) -> bool:
        return self.is_unix and same_socket(self.url, DEFAULT_HOST)


def normalize_socket(url: str) -> str:
    """unix:///run/docker.sock and unix:///var/run/docker.sock are one file (/var/run -> /run)."""
    if url.startswith("unix://"):
        path = os.path.normpath(url[len("unix://"):]) if url[len("unix://"):] else ""
        if path.startswith("/run/"):
            path = "/var" + path
        return "unix://" + path
    return url


def same_socket(a: str, b: str) -> bool:
    return normalize_socket(a) == normalize_socket(b)


def validate_host(value: str, flag: str = "--docker-host") -> str:
    """The URL as the docker CLI accepts it, or an InputError (a usage error, exit 2)."""
    from urllib.parse import urlsplit

    v = value.strip()
    if not v.lower().startswith(_SCHEMES):
        raise InputError(f"{flag} {value!r}: not a daemon address; use unix:///PATH, tcp://HOST:PORT or "
                         "ssh://[USER@]HOST")
    scheme, _, rest = v.partition("://")
    if scheme.lower() == "unix":
        if not rest.startswith("/"):
            raise InputError(f"{flag} {value!r}: a unix socket needs an absolute path (unix:///var/run/docker.sock)")
        return "unix://" + rest
    u = urlsplit(f"{scheme.lower()}://{rest}")
    try:
        u.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InputError(f"{flag} {value!r}: bad port") from None
    if not u.hostname:
        raise InputError(f"{flag} {value!r}: no host name")
    return f"{scheme.lower()}://{rest}"


def docker_config_dir(env: Mapping[str, str]) -> str:
    if env.get("DOCKER_CONFIG"):
        return env["DOCKER_CONFIG"]
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".docker")


def context_host(name: str, config_dir: str) -> tuple[str | None, str]:
    """The docker endpoint of context `name`, and the meta.json it was read from."""
    import hashlib

    meta = os.path.join(config_dir, "contexts", "meta", hashlib.sha256(name.encode()).hexdigest(), "meta.json")
    try:
        with open(meta, "rb") as fh:
            data = loads_json(fh.read(1024 * 1024))
    except FileNotFoundError:
        raise InputError(f"docker context {name!r} does not exist (no {meta}); "
                         "`docker context ls` lists them, --docker-host overrides") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"docker context {name!r}: cannot read {meta} ({exc})") from None
    endpoint = ((data.get("Endpoints") or {}).get("docker") or {}) if isinstance(data, dict) else {}
    host = endpoint.get("Host") if isinstance(endpoint, dict) else None
    return (host if isinstance(host, str) and host else None), meta


def resolve_docker_host(explicit: str | None, env: Mapping[str, str] | None = None) -> DockerHost:
    """--docker-host, else DOCKER_HOST, else the current context, else the default socket."""
    env = os.environ if env is None else env
    if explicit:
        return DockerHost(validate_host(explicit), "--docker-host")
    if env.get("DOCKER_HOST"):
        return DockerHost(validate_host(env["DOCKER_HOST"], "DOCKER_HOST"), "DOCKER_HOST")

    cfg_dir = docker_config_dir(env)
    name, where = env.get("DOCKER_CONTEXT") or "", "DOCKER_CONTEXT"
    if not name:
        cfg = os.path.join(cfg_dir, "config.json")
        try:
            with open(cfg, "rb") as fh:
                data = loads_json(fh.read(4 * 1024 * 1024))
            name = data.get("currentContext") or "" if isinstance(data, dict) else ""
            where = f"currentContext in {cfg}"
        except (OSError, ValueError):
            name = ""
    if name and name != "default":
        host, meta = context_host(name, cfg_dir)
        if host:
            return DockerHost(validate_host(host, f"docker context {name!r}"),
                              f"docker context {name} ({where}; {meta})")
    return DockerHost(DEFAULT_HOST, "default")


# --------------------------------------------------------------------------- asking the socket


@dataclass
class EngineAnswer:
    """What the socket said when asked: who answers it, or why nobody does."""

    host: DockerHost
    answered: bool
    why: str = ""  # "absent" | "refused" | "permission denied" | "not a socket" | "timeout" | "no Engine API"
    detail: str = ""  # the OS error text
    peer_pid: int | None = None  # SO_PEERCRED: the process that listens on the socket (0: not in our PID ns)
    peer_uid: int | None = None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text or self.detail or self.why, line)

    @property
    def source(self) -> str:
        return f"{self.host.url} ({self.host.chosen_by})"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket (SO_PEERCRED)."""
    import socket
    import struct

    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


_WHY = {
    errno.ENOENT: "absent",
    errno.ENOTDIR: "absent",
    errno.ECONNREFUSED: "refused",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTSOCK: "not a socket",
}


def ask_unix_socket(host: DockerHost, timeout: float = 2.0) -> EngineAnswer:
    """Connect, read SO_PEERCRED, and check that an Engine API answers GET /_ping."""
    import socket

    path = host.path or DEFAULT_SOCKET
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except OSError as exc:
            why = _WHY.get(exc.errno or 0, "error")
            if why == "refused" and os.path.exists(path) and not _is_socket(path):
                why = "not a socket"
            return EngineAnswer(host, False, why, os.strerror(exc.errno) if exc.errno else str(exc))
        pid, uid, _ = peer_credentials(s)
        ans = EngineAnswer(host, False, peer_pid=pid, peer_uid=uid)
        try:
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\nUser-Agent: dockerdoctor\r\n\r\n")
            head = s.recv(256)
        except TimeoutError:
            ans.why, ans.detail = "timeout", f"no answer to GET /_ping within {timeout:g}s"
            return ans
        except OSError as exc:
            ans.why, ans.detail = "error", exc.strerror or str(exc)
            return ans
        if head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0] + b" ":
            ans.answered = True
        else:
            ans.why = "no Engine API"
            ans.detail = "GET /_ping: " + (head.split(b"\r\n", 1)[0].decode(errors="replace")[:80] or "no answer")
        return ans
    finally:
        s.close()


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def ask_remote(host: DockerHost, timeout: float = 2.0) -> EngineAnswer:
    """tcp:// and ssh:// daemons: a TCP connect first (for a plain reason), then the Docker SDK's /_ping
    (with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH)."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(host.url)
    if u.scheme in ("tcp", "http", "https") and u.hostname:
        default = 2376 if u.scheme == "https" or os.environ.get("DOCKER_TLS_VERIFY") else 2375
        try:
            socket.create_connection((u.hostname, u.port or default), timeout=timeout).close()
        except OSError as exc:
            why = _WHY.get(exc.errno or 0, "timeout" if isinstance(exc, TimeoutError) else "error")
            return EngineAnswer(host, False, why, f"connect {u.hostname}:{u.port or default}: "
                                + (os.strerror(exc.errno).lower() if exc.errno else str(exc) or "timed out"))
    try:
        import docker

        kwargs = {}
        try:
            tls = docker.utils.kwargs_from_env().get("tls")
            if tls:
                kwargs["tls"] = tls
        except Exception:  # a broken DOCKER_CERT_PATH: try without TLS settings
            pass
        client = docker.APIClient(base_url=host.url, timeout=timeout, version="auto", **kwargs)
        try:
            ok = bool(client.ping())
        finally:
            client.close()
        return EngineAnswer(host, ok, "" if ok else "no Engine API")
    except Exception as exc:  # the SDK raises many kinds; any failure means "no answer"
        text = " ".join(str(exc).split())[:200] or exc.__class__.__name__
        return EngineAnswer(host, False, "error", text)


@fact()
def docker_host(facts: Facts) -> DockerHost:
    """The daemon this run inspects (live), or the socket whose daemon a snapshot's process list names."""
    opts = facts.options
    if not facts.live:
        return DockerHost(validate_host(opts.docker_host) if opts.docker_host else DEFAULT_HOST,
                          "--docker-host" if opts.docker_host else "default")
    if opts.docker_host and opts.docker_host_chosen_by:  # resolved by the CLI
        return DockerHost(opts.docker_host, opts.docker_host_chosen_by)
    return resolve_docker_host(opts.docker_host)


@fact()
def engine_answer(facts: Facts) -> EngineAnswer:
    """Live: does a Docker Engine answer on the socket, and which process listens on it."""
    if not facts.live:
        raise FactUnavailable("a snapshot's socket cannot be asked")
    host: DockerHost = facts.get("docker_host")
    if host.remote:
        return ask_remote(host, facts.options.timeout)
    return ask_unix_socket(host, min(facts.options.timeout, 2.0))


def require_local_daemon(facts: Facts, what: str) -> None:
    """Facts about the daemon's own files (unit, daemon.json, journal, certs.d) exist only for a local one."""
    if facts.live:
        host: DockerHost = facts.get("docker_host")
        if host.remote:
            raise FactUnavailable(f"the daemon is at {host.url} ({host.chosen_by}): this host's {what} is not "
                                  "that daemon's, so only its Engine API is judged")


@dataclass
class OtherDockerd:
    pid: int | None
    sockets: list[str] = field(default_factory=list)
    source: str = ""
    reachable: list[str] | None = None  # live: those of its unix sockets that are the same file here
    user: str = ""  # the process's user as ps names it ("" when unknown)

    @property
    def rootless(self) -> bool:
        return self.user not in ("", "root", "0")

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source or "process table", text or self.describe(), line)

    def describe(self) -> str:
        parts = []
        for s in self.sockets:
            hidden = self.reachable is not None and s.startswith("unix://") and s not in self.reachable
            parts.append(s + (" (in its own mount namespace, not this one's)" if hidden else ""))
        where = ", ".join(parts) or "?"
        who = f"rootless dockerd pid {self.pid} of user {self.user}" if self.rootless else f"dockerd pid {self.pid}"
        return f"{who} serves {where}" if self.pid else f"a dockerd serves {where}"


def path_in_root(root: str, path: str) -> str:
    """`path` as the process whose root directory is `root` (/proc/PID/root) sees it. The kernel resolves
    an absolute symbolic link met under /proc/PID/root against the *caller's* root (/var/run -> /run would
    lead to this host's /run), so links are followed here, inside `root` (as a snapshot's are)."""
    from dockerdoctor.sources.base import resolve_in_root

    parts = resolve_in_root(root, path)
    return root + "/" + "/".join(parts if parts is not None else [p for p in path.split("/") if p])


def reachable_sockets(pid: int, sockets: list[str]) -> list[str]:
    """The unix sockets of process `pid` that are the same file in this process's mount namespace."""
    out = []
    for s in sockets:
        if not s.startswith("unix://"):
            continue
        path = s[len("unix://"):]
        try:
            mine, theirs = os.stat(path), os.stat(path_in_root(f"/proc/{pid}/root", path))
        except OSError:
            continue
        if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
            out.append(s)
    return out
