"""Containers: what the Docker Engine API (or a snapshot's docker plugin output) says of each.

Live, everything comes from the Docker Engine API (the `docker` SDK, `facts.options.docker_host`):
`GET /containers/json?all=1`, `GET /containers/ID/json` and a bounded log tail
(`GET /containers/ID/logs?tail=N`), never a whole log. In a snapshot it comes from sos's docker
plugin: `sos_commands/docker/containers/docker_inspect_<id-or-name>` (the JSON array that
`docker inspect` prints) and `docker_logs_-t_<id-or-name>` (collected with sos's `docker.logs`
option), read as a bounded tail too.

A container counts as a registry by its image (`registry`, `distribution/registry`, harbor's
`registry-photon`, zot), by its command (`registry serve`, gunicorn running `docker_registry`), or
by its log lines (`registry_kind`); what such a registry is made of is in facts/registry_containers.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.model import Provenance
from dockerdoctor.safetext import isdigits, loads_json, short
from dockerdoctor.sources.specs import SOS_CONTAINERS_DIR, SOS_IMAGES_DIR

LOG_TAIL_LINES = 300  # lines of each registry container's log that are read
LOG_TAIL_OTHER = 30  # lines of other containers' logs (enough to recognise a registry by its log)
LOG_TAIL_BYTES = 512 * 1024  # the tail of a snapshot's log file that is read
LOG_LINE_MAX = 2000
MAX_CONTAINERS = 300


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Mount:
    type: str  # bind | volume | tmpfs | npipe
    source: str  # host path (bind) or volume name
    destination: str
    mode: str = ""  # the -v mode string: "z", "Z", "ro,Z", ...
    rw: bool = True
    name: str | None = None  # volume name

    @property
    def selinux_label(self) -> str | None:
        """'z' or 'Z' when the mount asks docker to relabel it."""
        for part in self.mode.split(","):
            if part in ("z", "Z"):
                return part
        return None

    @property
    def anonymous(self) -> bool:
        return self.type == "volume" and bool(self.name) and bool(re.fullmatch(r"[0-9a-f]{64}", self.name or ""))


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    proto: str
    host_ip: str
    host_port: int | None

    def docker_arg(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip and self.host_ip not in ("0.0.0.0", "::", "") else ""
        hp = str(self.host_port) if self.host_port else ""
        suffix = "" if self.proto == "tcp" else f"/{self.proto}"
        return f"{ip}{hp}:{self.container_port}{suffix}" if (ip or hp) else f"{self.container_port}{suffix}"


@dataclass
class ContainerInfo:
    id: str
    name: str
    image: str  # Config.Image as the user wrote it (registry:2, 10.0.0.5:5000/x/y:tag, sha256:...)
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    env_list: list[str]
    labels: dict[str, str]
    status: str  # running | restarting | exited | created | paused | dead
    exit_code: int | None
    error: str
    restarting: bool
    restart_count: int
    restart_policy: str  # no | always | unless-stopped | on-failure
    restart_max: int
    network_mode: str
    ports: list[PortBinding]  # published
    exposed: list[tuple[int, str]]
    mounts: list[Mount]
    started_at: str = ""
    finished_at: str = ""
    oom_killed: bool = False
    source: str = ""  # evidence for the inspect data
    logs: list[str] = field(default_factory=list)
    log_source: str | None = None  # None: logs not known
    image_env: list[str] | None = None
    image_cmd: list[str] | None = None
    image_entrypoint: list[str] | None = None
    image_labels: dict[str, str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def log_evidence(self, lineno: int | None, line: str) -> Provenance:
        """One line of the container's log (shortened to 300 characters)."""
        return Provenance(self.log_source or f"docker logs {self.name}", short(line, 300), lineno)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """The inspect data's source; a log line's is ``log_evidence()``."""
        return Provenance(self.source, text, line)

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def host_network(self) -> bool:
        return self.network_mode == "host"

    @property
    def image_repo(self) -> str:
        """The repository of Config.Image without registry host, tag or digest (library/ dropped)."""
        return image_repo(self.image)

    @property
    def image_tag(self) -> str | None:
        return image_tag(self.image)

    def log_grep(self, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
        return [(i + 1, ln) for i, ln in enumerate(self.logs) if pattern.search(ln)]


def image_repo(image: str) -> str:
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts).lower()


def image_tag(image: str) -> str | None:
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


# --------------------------------------------------------------------------- parsing


def _env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        k, sep, v = item.partition("=")
        if sep:
            out[k] = v
    return out


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list):
        return []
    return [x if isinstance(x, str) else json.dumps(x) for x in v]


# docker inspect output is untrusted text: every value may have the wrong JSON type.
def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _arr(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return int(v) if isinstance(v, str) and isdigits(v) else 0
    return int(v) if abs(v) < 2**63 else 0


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _port_key(key: str) -> tuple[int, str] | None:
    num, _, proto = key.partition("/")
    if not isdigits(num):
        return None
    return int(num), (proto or "tcp")


def container_from_inspect(data: dict[str, Any], source: str) -> ContainerInfo:
    """One element of `docker inspect`'s JSON array (or the Engine API's /containers/ID/json)."""
    cfg = _obj(data.get("Config"))
    host = _obj(data.get("HostConfig"))
    state = _obj(data.get("State"))
    net = _obj(data.get("NetworkSettings"))
    env_list = _as_list(cfg.get("Env"))
    ports: list[PortBinding] = []
    bindings = net.get("Ports") if isinstance(net.get("Ports"), dict) and net.get("Ports") else None
    if not bindings:
        bindings = _obj(host.get("PortBindings"))
    for key, binds in bindings.items():
        pk = _port_key(key)
        if pk is None or not binds:
            continue
        for b in _arr(binds):
            hp = _str(_obj(b).get("HostPort"))
            ports.append(PortBinding(pk[0], pk[1], _str(_obj(b).get("HostIp")),
                                     int(hp) if isdigits(hp) else None))
    seen_ports: set[tuple[int, str, str, int | None]] = set()
    uniq = []
    for p in ports:
        # docker lists 0.0.0.0 and :: for one -p; keep both, but no exact duplicates
        k = (p.container_port, p.proto, p.host_ip, p.host_port)
        if k not in seen_ports:
            seen_ports.add(k)
            uniq.append(p)
    exposed = [pk for pk in (_port_key(k) for k in _obj(cfg.get("ExposedPorts"))) if pk]
    mounts: list[Mount] = []
    for m in _arr(data.get("Mounts")):
        m = _obj(m)
        mounts.append(Mount(
            type=_str(m.get("Type")) or ("volume" if m.get("Name") else "bind"),
            source=_str(m.get("Source")) or _str(m.get("Name")),
            destination=_str(m.get("Destination")),
            mode=_str(m.get("Mode")),
            rw=m.get("RW", True) is not False,
            name=_str(m.get("Name")) or None,
        ))
    # HostConfig.Binds keeps the mode the user typed (":Z"); Mounts[].Mode usually has it too.
    binds_mode: dict[str, str] = {}
    for b in _as_list(host.get("Binds")):
        parts = b.split(":")
        if len(parts) >= 3:
            binds_mode[parts[1]] = parts[2]
    mounts = [
        Mount(m.type, m.source, m.destination, m.mode or binds_mode.get(m.destination, ""), m.rw, m.name)
        for m in mounts
    ]
    if not mounts and binds_mode:
        for b in _as_list(host.get("Binds")):
            parts = b.split(":")
            if len(parts) >= 2:
                src, dst = parts[0], parts[1]
                mode = parts[2] if len(parts) > 2 else ""
                kind = "bind" if src.startswith("/") else "volume"
                mounts.append(Mount(kind, src, dst, mode, "ro" not in mode.split(","),
                                    None if kind == "bind" else src))
    rp = _obj(host.get("RestartPolicy"))
    name = _str(data.get("Name")).lstrip("/")
    status = _str(state.get("Status")) or ("running" if state.get("Running") is True else "exited")
    if state.get("Restarting") is True:
        status = "restarting"
    labels = {k: v if isinstance(v, str) else json.dumps(v) for k, v in _obj(cfg.get("Labels")).items()}
    exit_code = state.get("ExitCode")
    return ContainerInfo(
        id=_str(data.get("Id")),
        name=name or _str(data.get("Id"))[:12],
        image=_str(cfg.get("Image")) or _str(data.get("Image")),
        entrypoint=_as_list(cfg.get("Entrypoint")),
        cmd=_as_list(cfg.get("Cmd")),
        env=_env_dict(env_list),
        env_list=env_list,
        labels=labels,
        status=status,
        exit_code=_int(exit_code) if exit_code is not None else None,
        error=_str(state.get("Error")),
        restarting=state.get("Restarting") is True,
        restart_count=_int(data.get("RestartCount")),
        restart_policy=_str(rp.get("Name")) or "no",
        restart_max=_int(rp.get("MaximumRetryCount")),
        network_mode=_str(host.get("NetworkMode")) or "default",
        ports=uniq,
        exposed=exposed,
        mounts=mounts,
        started_at=_str(state.get("StartedAt")),
        finished_at=_str(state.get("FinishedAt")),
        oom_killed=state.get("OOMKilled") is True,
        source=source,
        raw=data,
    )


def parse_inspect_text(text: str, source: str) -> list[ContainerInfo]:
    try:
        data = loads_json(text)
    except ValueError:
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return []
    return [container_from_inspect(d, source) for d in data if isinstance(d, dict) and "Config" in d]


def split_log(text: str, *, tail_bytes_cut: bool = False, max_lines: int = LOG_TAIL_LINES) -> list[str]:
    lines = text.splitlines()
    if tail_bytes_cut and lines:
        lines = lines[1:]  # the first line of a byte tail may be cut
    return [ln[:LOG_LINE_MAX] for ln in lines[-max_lines:]]


# --------------------------------------------------------------------------- registry recognition

_REGISTRY_REPOS = {
    "registry": "distribution or python registry image",
    "distribution/registry": "distribution's image",
    "docker-registry": "registry image",
    "goharbor/registry-photon": "harbor's registry image",
    "project-zot/zot": "zot",
}
_REG_LOG = re.compile(r"docker_registry|_setup_database\.lock|msg=\"listening on .*\" go\.version=|"
                      r"msg=\"redis not configured\"|instance\.id=[0-9a-f-]+ service=registry|"
                      r"No HTTP secret provided")


def registry_kind(c: ContainerInfo) -> tuple[str | None, list[str]]:
    """What kind of registry `c` is (distribution, python, harbor, zot; None: not one), and how that shows."""
    why: list[str] = []
    kind: str | None = None
    repo = c.image_repo
    if repo in _REGISTRY_REPOS or repo.endswith("/distribution/registry") or repo.rsplit("/", 1)[-1] == "registry":
        kind = "harbor" if "harbor" in repo or "photon" in repo else "distribution"
        why.append(f"image {c.image}")
    elif "zot" in repo.rsplit("/", 1)[-1]:
        kind = "zot"
        why.append(f"image {c.image}")
    elif "harbor" in repo and "registry" in repo:
        kind = "harbor"
        why.append(f"image {c.image}")
    argv = c.argv
    words = " ".join(argv)
    bases = [a.rsplit("/", 1)[-1] for a in argv]
    if ("registry" in bases or "docker-registry" in bases) and "serve" in argv:
        kind = kind or "distribution"
        why.append(f"command {words}")
    elif "docker_registry" in words or "docker-registry" in bases:
        kind = "python" if kind in (None, "distribution") else kind
        why.append(f"command {words}")
    elif any(b == "zot" for b in bases) and "serve" in argv:
        kind = kind or "zot"
        why.append(f"command {words}")
    if kind is None:
        hits = c.log_grep(_REG_LOG)
        if hits:
            kind = "python" if ("docker_registry" in hits[0][1] or "_setup_database" in hits[0][1]) else "distribution"
            why.append(f"log line: {hits[0][1][:160]}")
    return kind, why


# --------------------------------------------------------------------------- facts


def _live_client(facts: Facts) -> Any:
    import docker

    host = facts.get("docker_host").url
    try:
        client = docker.APIClient(base_url=host, version="auto", timeout=max(facts.options.timeout, 5.0))
    except Exception as exc:  # DockerException: the socket is absent or not a daemon
        raise FactUnavailable(f"the Engine API at {host} did not answer ({exc.__class__.__name__})") from None
    return client


def _decode_logs(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


@fact()
def containers(facts: Facts) -> list[ContainerInfo]:
    """Every container (running or not), with a bounded log tail for the ones that look like registries."""
    if facts.live:
        return _containers_live(facts)
    return _containers_snapshot(facts)


def _containers_live(facts: Facts) -> list[ContainerInfo]:
    ans = facts.get("engine_answer")
    if not ans.answered:
        raise FactUnavailable(f"nothing answers on {ans.host.url}, so the Engine API cannot list containers")
    client = _live_client(facts)
    host = ans.host.url
    out: list[ContainerInfo] = []
    try:
        try:
            listing = client.containers(all=True)
        except Exception as exc:
            raise FactUnavailable(f"the Engine API at {host} did not list containers ({exc})") from None
        image_cache: dict[str, dict[str, Any] | None] = {}
        for item in listing[:MAX_CONTAINERS]:
            cid = item.get("Id")
            try:
                data = client.inspect_container(cid)
            except Exception:
                continue  # removed while we looked
            c = container_from_inspect(data, f"Engine API /containers/{str(cid)[:12]}/json")
            kind, _ = registry_kind(c)
            try:
                raw = client.logs(cid, stdout=True, stderr=True, timestamps=True,
                                  tail=LOG_TAIL_LINES if kind else LOG_TAIL_OTHER)
                c.logs = split_log(_decode_logs(raw))
                c.log_source = f"docker logs -t --tail {LOG_TAIL_LINES if kind else LOG_TAIL_OTHER} {c.name}"
            except Exception:
                c.log_source = None
            if kind is None:
                kind, _ = registry_kind(c)  # by its log lines
                if kind:
                    try:
                        raw = client.logs(cid, stdout=True, stderr=True, timestamps=True, tail=LOG_TAIL_LINES)
                        c.logs = split_log(_decode_logs(raw))
                        c.log_source = f"docker logs -t --tail {LOG_TAIL_LINES} {c.name}"
                    except Exception:
                        pass
            if kind:
                img_id = str(data.get("Image") or "")
                if img_id not in image_cache:
                    try:
                        image_cache[img_id] = client.inspect_image(img_id)
                    except Exception:
                        image_cache[img_id] = None
                _set_image_defaults(c, image_cache[img_id])
            out.append(c)
    finally:
        try:
            client.close()
        except Exception:
            pass
    return out


def _set_image_defaults(c: ContainerInfo, img: dict[str, Any] | None) -> None:
    if not img:
        return
    cfg = img.get("Config") or {}
    c.image_env = _as_list(cfg.get("Env"))
    c.image_cmd = _as_list(cfg.get("Cmd"))
    c.image_entrypoint = _as_list(cfg.get("Entrypoint"))
    c.image_labels = dict(cfg.get("Labels") or {})


def _containers_snapshot(facts: Facts) -> list[ContainerInfo]:
    src = facts.source
    names = src.listdir(SOS_CONTAINERS_DIR)
    inspects = [n for n in names if n.startswith("docker_inspect_")]
    if not inspects:
        ps = src.command("docker_ps")
        if ps is not None and len([ln for ln in ps.splitlines() if ln.strip()]) <= 1:
            return []  # docker ps -a lists no container at all
        raise FactUnavailable(
            "no container inspect output in the snapshot (sos_commands/docker/containers/docker_inspect_*; "
            "sos collects them when docker runs, add `-k docker.all=on -k docker.logs=on` for stopped ones and logs)"
        )
    logs_by_suffix = {n[len("docker_logs_-t_"):]: n for n in names if n.startswith("docker_logs_-t_")}
    logs_by_suffix.update({n[len("docker_logs_"):]: n for n in names
                           if n.startswith("docker_logs_") and not n.startswith("docker_logs_-t_")
                           and n[len("docker_logs_"):] not in logs_by_suffix})
    images: dict[str, dict[str, Any]] = {}
    for n in src.listdir(SOS_IMAGES_DIR):
        if n.startswith("docker_inspect_"):
            text = src.read_text(f"{SOS_IMAGES_DIR}/{n}")
            try:
                arr = loads_json(text or "")
            except ValueError:
                continue
            for img in arr if isinstance(arr, list) else [arr]:
                if isinstance(img, dict):
                    images[str(img.get("Id") or "")] = img
                    for t in img.get("RepoTags") or []:
                        images[str(t)] = img
    out: list[ContainerInfo] = []
    for n in inspects[:MAX_CONTAINERS]:
        path = f"{SOS_CONTAINERS_DIR}/{n}"
        text = src.read_text(path)
        if not text:
            continue
        for c in parse_inspect_text(text, path.lstrip("/")):
            suffix = n[len("docker_inspect_"):]
            log_name = None
            for key in (suffix, c.name, c.id[:12], c.id):
                if key in logs_by_suffix:
                    log_name = logs_by_suffix[key]
                    break
            if log_name:
                lpath = f"{SOS_CONTAINERS_DIR}/{log_name}"
                raw = src.read_bytes(lpath, limit=LOG_TAIL_BYTES, tail=True)
                if raw is not None:
                    st = src.stat(lpath)
                    size = st.size if st is not None else 0
                    c.logs = split_log(raw.decode("utf-8", errors="replace"), tail_bytes_cut=size > LOG_TAIL_BYTES)
                    c.log_source = lpath.lstrip("/")
            img = images.get(str(c.raw.get("Image") or "")) or images.get(c.image)
            _set_image_defaults(c, img)
            out.append(c)
    return out
