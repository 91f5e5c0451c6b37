"""SELinux: the mode, the labels of the registry's host directories, and AVC denials.

Mode: /sys/fs/selinux/enforce live; `sestatus` output and /etc/selinux/config in a snapshot (and
as a fallback live). Labels: the `security.selinux` xattr live; `ls -Z` output where a snapshot
has it (any `sos_commands/**/ls_*Z*` file), and local `semanage fcontext -l` rules. Denials:
the tail of /var/log/audit/audit.log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.model import Provenance
from dockerdoctor.safetext import isdigits
from dockerdoctor.sources.specs import FILES, file_path, read_first

AUDIT_LOG = file_path("audit_log")
AUDIT_TAIL = FILES["audit_log"].limit or 8 * 1024 * 1024
CONTAINER_FILE_TYPES = {"container_file_t", "svirt_sandbox_file_t", "svirt_lxc_file_t", "container_var_lib_t"}


@dataclass
class SelinuxStatus:
    mode: str | None  # enforcing | permissive | disabled | None (unknown)
    config_mode: str | None  # SELINUX= in /etc/selinux/config
    config_path: str = file_path("selinux_config")
    config_line: int | None = None
    policy: str | None = None
    source: str = ""
    docker_selinux: bool | None = None  # dockerd runs with --selinux-enabled (labels containers)
    docker_selinux_source: str = ""

    def config_evidence(self) -> Provenance:
        return Provenance(self.config_path, f"SELINUX={self.config_mode}", self.config_line)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """The mode's source; the config file's is ``config_evidence()``."""
        return Provenance(self.source or "SELinux", text or f"mode: {self.mode}", line)

    @property
    def enforcing(self) -> bool:
        return self.mode == "enforcing"

    @property
    def enabled(self) -> bool:
        return self.mode in ("enforcing", "permissive")


def parse_sestatus(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and v.strip():
            out[k.strip().lower()] = v.strip()
    return out


def parse_selinux_config(text: str) -> tuple[str | None, int | None, str | None]:
    mode = line_no = policy = None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("#"):
            continue
        if s.startswith("SELINUX="):
            mode, line_no = s.split("=", 1)[1].strip().strip("\"'").lower(), i
        elif s.startswith("SELINUXTYPE="):
            policy = s.split("=", 1)[1].strip().strip("\"'")
    return mode, line_no, policy


def _docker_selinux(facts: Facts) -> tuple[bool | None, str]:
    proc = facts.optional("dockerd_process")
    cfg = facts.optional("effective_config")
    info = facts.optional("docker_info")  # Engine API /info live, `docker info` text in a snapshot
    if info is not None and info.security_options is not None:
        opts = info.security_options
        return any("selinux" in o.split() or o.startswith("name=selinux") or o == "selinux" for o in opts), \
            info.source
    if proc is not None:
        argv = " ".join(proc.argv)
        if "--selinux-enabled" in argv:
            return "--selinux-enabled=false" not in argv, proc.source
    if cfg is not None and cfg.daemon_json.data:
        if "selinux-enabled" in cfg.daemon_json.data:
            return bool(cfg.daemon_json.data["selinux-enabled"]), cfg.daemon_json.path
    return None, ""


@fact()
def selinux_status(facts: Facts) -> SelinuxStatus:
    src = facts.source
    config_path, conf = read_first(src, "selinux_config") or (file_path("selinux_config"), None)
    cmode, cline, policy = parse_selinux_config(conf) if conf else (None, None, None)
    mode: str | None = None
    source = ""
    if facts.live:
        got = read_first(src, "selinux_enforce")
        if got is not None:
            mode = "enforcing" if got[1].strip() == "1" else "permissive"
            source = got[0]
        elif not src.exists(os.path.dirname(file_path("selinux_enforce"))):
            mode, source = "disabled", "no /sys/fs/selinux (SELinux is not enabled in this kernel)"
    if mode is None:
        text = src.command("sestatus")
        if text:
            st = parse_sestatus(text)
            source = src.command_source("sestatus")
            if st.get("selinux status", "").lower() == "disabled":
                mode = "disabled"
            elif st.get("current mode"):
                mode = st["current mode"].lower()
            policy = policy or st.get("loaded policy name")
    if mode is None and cmode is not None:
        mode, source = cmode, f"{config_path}:{cline} (the mode at next boot; no sestatus)"
    if mode is None and conf is None:
        raise FactUnavailable("the SELinux mode is unknown (no /sys/fs/selinux, sestatus or /etc/selinux/config)")
    dsel, dsrc = _docker_selinux(facts)
    return SelinuxStatus(mode, cmode, config_path, cline, policy, source, dsel, dsrc)


# --------------------------------------------------------------------------- file labels


def context_type(context: str) -> str:
    """The type of an SELinux context (`system_u:object_r:container_file_t:s0` -> container_file_t); a text
    that is no context, whole."""
    parts = context.split(":")
    return parts[2] if len(parts) >= 3 else context


@dataclass(frozen=True)
class FileLabel:
    path: str
    context: str
    source: str

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text or f"{self.context} {self.path}", line)

    @property
    def type(self) -> str:
        return context_type(self.context)


_CTX = re.compile(r"\b([a-z_]+_u):([a-z_]+_r):([a-z0-9_]+_t)(?::(s\d+(?:-s\d+)?(?::c[\d.,c]+)?))?")


def parse_ls_z(text: str, source: str, default_dir: str | None = None) -> dict[str, FileLabel]:
    """`ls -Z`, `ls -dZ`, `ls -laZ` and `ls -laZR` output: path -> label.

    `ls -dZ /srv/registry` prints `ctx /srv/registry`; `ls -laZ DIR` prints mode, links, owner,
    group, ctx, size, date, name, with `.` standing for DIR (given by a `DIR:` header, or by
    `default_dir`, taken from the file name `ls_-laZ_srv_registry` when possible).
    """
    out: dict[str, FileLabel] = {}
    cur = default_dir
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        if line.endswith(":") and line.startswith("/") and " " not in line:
            cur = line[:-1]
            continue
        m = _CTX.search(line)
        if not m:
            continue
        ctx = m.group(0)
        rest = line[m.end():].strip()
        before = line[: m.start()].strip()
        if before and before[0] in "-dlcbps" and len(before.split()) >= 3:
            # long listing: the name is the last field after the date
            fields = rest.split()
            name = fields[-1] if fields else ""
            if " -> " in rest:
                name = rest.split(" -> ")[0].split()[-1]
            if name == "." and cur:
                path = cur
            elif name == ".." or not name:
                continue
            elif name.startswith("/"):
                path = name
            elif cur:
                path = cur.rstrip("/") + "/" + name
            else:
                continue
        else:
            path = rest.split()[0] if rest else ""
            if not path:
                continue
            if not path.startswith("/") and cur:
                path = cur.rstrip("/") + "/" + path
        out[path.rstrip("/") or "/"] = FileLabel(path.rstrip("/") or "/", ctx, source)
    return out


@dataclass(frozen=True)
class FcontextRule:
    pattern: str
    context: str
    source: str

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text or f"{self.pattern} {self.context}", line)

    @property
    def type(self) -> str:
        return context_type(self.context)

    def matches(self, path: str) -> bool:
        try:
            return re.fullmatch(self.pattern, path) is not None
        except re.error:
            return False


@dataclass
class SelinuxLabels:
    files: dict[str, FileLabel] = field(default_factory=dict)
    fcontext_rules: list[FcontextRule] = field(default_factory=list)
    live: bool = False

    def label_of(self, path: str) -> FileLabel | None:
        p = path.rstrip("/") or "/"
        if p in self.files:
            return self.files[p]
        if self.live:
            try:
                ctx = os.getxattr(p, "security.selinux").decode(errors="replace").rstrip("\x00")
            except OSError:
                return None
            lab = FileLabel(p, ctx, f"security.selinux xattr of {p}")
            self.files[p] = lab
            return lab
        return None

    def rule_for(self, path: str) -> FcontextRule | None:
        hit = None
        for r in self.fcontext_rules:
            if r.matches(path.rstrip("/")):
                hit = r  # later (local) rules win
        return hit


_FCONTEXT = re.compile(r"^(\S+)\s+(?:all files|directory|regular file|symbolic link|socket|block device|"
                       r"character device|named pipe)\s+(\S+)\s*$")


def parse_fcontext(text: str, source: str) -> list[FcontextRule]:
    out = []
    for line in text.splitlines():
        m = _FCONTEXT.match(line.strip())
        if m and m.group(2) != "<<None>>":
            out.append(FcontextRule(m.group(1), m.group(2), source))
    return out


def _dir_from_ls_name(name: str) -> str | None:
    m = re.match(r"ls_-[a-zA-Z]*Z[a-zA-Z]*_(.+)$", name)
    if not m:
        return None
    return "/" + m.group(1).replace(".._", "").lstrip("_").replace("_", "/")


@fact()
def selinux_labels(facts: Facts) -> SelinuxLabels:
    src = facts.source
    labels = SelinuxLabels(live=facts.live)
    if not facts.live:
        for d in ("sos_commands/selinux", "sos_commands/filesys", "sos_commands/docker", "sos_commands/dockerdoctor"):
            for name in src.listdir("/" + d):
                if name.startswith("ls_") and "Z" in name.split("_")[1]:
                    text = src.read_text(f"/{d}/{name}")
                    if text:
                        labels.files.update(parse_ls_z(text, f"{d}/{name}", _dir_from_ls_name(name)))
    for d in ("sos_commands/selinux",):
        for name in src.listdir("/" + d):
            if name.startswith("semanage_fcontext_-l"):
                text = src.read_text(f"/{d}/{name}")
                if text:
                    labels.fcontext_rules.extend(parse_fcontext(text, f"{d}/{name}"))
    local_path, local = read_first(src, "file_contexts_local") or ("", "")
    if local:
        for line in local.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("#"):
                labels.fcontext_rules.append(FcontextRule(parts[0], parts[-1], local_path))
    return labels


# --------------------------------------------------------------------------- AVC denials


@dataclass(frozen=True)
class AvcDenial:
    line: int
    text: str
    perms: tuple[str, ...]
    comm: str | None
    name: str | None
    path: str | None
    scontext: str | None
    tcontext: str | None
    tclass: str | None
    permissive: bool | None
    pid: int | None
    timestamp: float | None

    @property
    def stype(self) -> str | None:
        return self.scontext.split(":")[2] if self.scontext and self.scontext.count(":") >= 2 else None

    @property
    def ttype(self) -> str | None:
        return self.tcontext.split(":")[2] if self.tcontext and self.tcontext.count(":") >= 2 else None


_AVC = re.compile(r"avc:\s+denied\s+\{\s*([^}]*)\}")
_KV = re.compile(r'(\w+)=("[^"]*"|\S+)')
_TS = re.compile(r"msg=audit\((\d+(?:\.\d+)?):")


def parse_avc(text: str) -> list[AvcDenial]:
    out: list[AvcDenial] = []
    for i, line in enumerate(text.splitlines(), 1):
        m = _AVC.search(line)
        if not m:
            continue
        kv = {k: v.strip('"') for k, v in _KV.findall(line[m.end():])}
        ts = _TS.search(line)
        out.append(AvcDenial(
            line=i, text=line.strip(), perms=tuple(m.group(1).split()),
            comm=kv.get("comm"), name=kv.get("name"), path=kv.get("path"),
            scontext=kv.get("scontext"), tcontext=kv.get("tcontext"), tclass=kv.get("tclass"),
            permissive=(kv.get("permissive") == "1") if "permissive" in kv else None,
            pid=int(kv["pid"]) if isdigits(kv.get("pid", "")) else None,
            timestamp=float(ts.group(1)) if ts else None,
        ))
    return out


@dataclass
class AuditLog:
    source: str
    denials: list[AvcDenial]
    truncated: bool = False

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)


@fact()
def avc_denials(facts: Facts) -> AuditLog:
    raw = facts.source.read_bytes(AUDIT_LOG, limit=AUDIT_TAIL, tail=True)
    if raw is None:
        raise FactUnavailable(f"{AUDIT_LOG} is not readable here")
    text = raw.decode("utf-8", errors="replace")
    truncated = len(raw) >= AUDIT_TAIL
    if truncated:
        text = text.split("\n", 1)[-1]
    return AuditLog(AUDIT_LOG.lstrip("/") if not facts.live else AUDIT_LOG, parse_avc(text), truncated)
