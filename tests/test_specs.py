"""The spec table (dockerdoctor/sources/specs.py) and `collect` agree: every file, folder and command a
fact reads on any fixture host is one `collect` writes, and facts name no host path of their own."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from dockerdoctor.collect import collect_specs
from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import CheckOptions, Facts, HostPort, known_facts
from dockerdoctor.sources import specs
from dockerdoctor.sources.base import DEFAULT_READ_LIMIT, FileStat, Source
from dockerdoctor.sources.snapshot import SnapshotSource

REPO = Path(__file__).resolve().parent.parent
HOSTS = REPO / "fixtures" / "hosts"
SCENARIOS = sorted(p.parent.name for p in HOSTS.glob("*/expected.json"))

# Paths a fact reads that the table cannot name, because the host itself names them: the unit's
# EnvironmentFile=, dockerd's --config-file, a registry container's bind-mounted config.yml.
DERIVED = ("environment file named by docker.service", "--config-file", "registry container config")
# Snapshot-only evidence: sos writes it, `collect` does not (yet): `ls -Z` listings and
# `semanage fcontext -l` (collect would need SELinux tools; the live check reads labels itself).
SOS_ONLY_DIRS = ("/sos_commands/selinux", "/sos_commands/filesys", "/sos_commands/docker",
                 "/sos_commands/dockerdoctor")


class Recorder(Source):
    """A snapshot that notes every path and command a fact asks for."""

    def __init__(self, inner: SnapshotSource) -> None:
        self.inner = inner
        self.live = inner.live
        self.paths: set[str] = set()
        self.commands: set[str] = set()

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        self.paths.add(path)
        return self.inner.read_bytes(path, limit, tail)

    def stat(self, path: str) -> FileStat | None:
        self.paths.add(path)
        return self.inner.stat(path)

    def listdir(self, path: str) -> list[str]:
        self.paths.add(path)
        return self.inner.listdir(path)

    def is_symlink_to(self, path: str) -> str | None:
        self.paths.add(path)
        return self.inner.is_symlink_to(path)

    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        self.commands.add(key)
        return self.inner.command(key, limit)

    def command_source(self, key: str) -> str:
        return self.inner.command_source(key)


def _covered(path: str) -> bool:
    cs = collect_specs()
    files = {s.path for s in cs if s.kind == "file"}
    trees = [s.path for s in cs if s.kind == "tree"]
    units = [s.path for s in cs if s.kind == "unit"]
    per_container = {str(Path("/" + s.path).parent) for s in cs if s.kind == "container"}
    p = path.rstrip("/")
    return (p in files or _user_covered(p, cs) or any(p == t or p.startswith(t + "/") for t in trees)
            or any(p == u or p == u + ".d" or p.startswith(u + ".d/") for u in units)
            or any(p == d or p.startswith(d + "/") for d in per_container))


def _user_covered(p: str, cs: list) -> bool:
    """A per-user row's path: HOME_BASE/NAME/.config/REL for exactly one name (any), or below REL for a folder
    row; HOME_BASE itself is what collect lists to find the homes. Nothing else under HOME_BASE is covered."""
    rows = [s for s in cs if s.kind in ("user-file", "user-tree")]
    if rows and p == specs.HOME_BASE:
        return True
    parts = p.split("/")
    for s in rows:
        pat = s.path.split("/")
        if len(parts) < len(pat) or (s.kind == "user-file" and len(parts) != len(pat)):
            continue
        if all(a == "*" and b not in ("", ".", "..") or a == b for a, b in zip(pat, parts[:len(pat)], strict=True)):
            return True
    return False


def _derived(facts: Facts) -> set[str]:
    out: set[str] = set()
    unit = facts.optional("docker_unit")
    if unit is not None:
        out |= {r.path for r in unit.environment_files}
    dj = facts.optional("daemon_json")
    if dj is not None:
        out.add(dj.path)
    for rc in facts.optional("registry_containers") or []:
        if rc.config_path:
            out.add(rc.config_path)
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_path_a_fact_reads_is_collected(name: str) -> None:
    expected = json.loads((HOSTS / name / "expected.json").read_text())
    args = expected.get("args", [])
    regs = [HostPort.parse(args[i + 1]) for i, a in enumerate(args) if a in ("--registry", "-r")]
    inner = SnapshotSource(HOSTS / name)
    rec = Recorder(inner)
    facts = Facts(rec, CheckOptions(registries=regs, network=False))
    try:
        for f in known_facts():
            try:
                facts.get(f)
            except FactUnavailable:
                pass
        derived = _derived(facts)
    finally:
        inner.close()
    assert rec.paths and rec.commands, "the recorder saw nothing: the test would prove nothing"
    assert rec.commands <= set(specs.COMMANDS), rec.commands - set(specs.COMMANDS)
    collected_cmds = {s.path for s in collect_specs() if s.kind == "command"}
    for key in rec.commands:
        assert specs.COMMANDS[key].sos[0] in collected_cmds, f"command {key} is read but never collected"
    missing = sorted(p for p in rec.paths
                     if not _covered(p) and p not in derived and not p.startswith(SOS_ONLY_DIRS))
    assert not missing, f"read by facts but not collected: {missing}"


def test_spec_rows_are_well_formed_and_unique() -> None:
    cs = collect_specs()
    assert len({(s.kind, s.path) for s in cs}) == len(cs), "a path is collected twice"
    for key, spec in specs.COMMANDS.items():
        assert spec.live and spec.sos and not any("{" in a for a in spec.live), key
    with pytest.raises(ValueError, match="twice"):
        specs.add_file("daemon_json", specs.FileSpec(("/elsewhere",)))
    # the bug this table fixes: these were read by facts and never collected
    paths = {s.path for s in cs}
    for p in ("/etc/firewalld/firewalld.conf", "/var/log/audit/audit.log",
              "/etc/selinux/targeted/contexts/files/file_contexts.local", "/usr/lib/firewalld/zones",
              "/etc/firewalld/zones", "/usr/lib/firewalld/services", "/etc/firewalld/services"):
        assert p in paths, p
    assert "/sys/fs/selinux/enforce" not in paths  # kernel state: read live only


def test_per_user_rows_cover_exactly_their_paths() -> None:
    cs = collect_specs()
    b = specs.HOME_BASE
    for p in (f"{b}/alice/.config/nerdctl/nerdctl.toml", f"{b}/alice/.config/containerd/config.toml",
              f"{b}/bob/.config/containerd/certs.d/10.0.0.5:5000/hosts.toml",
              f"{b}/bob/.config/docker/certs.d/x/ca.crt", f"{b}/alice/.config/docker/daemon.json",
              f"{b}/alice/.config/systemd/user/docker.service", b):
        assert _covered(p), p
    for p in (f"{b}/alice/.ssh/id_rsa", f"{b}/alice/.config/nerdctl", f"{b}/alice/.config/containerd/other.toml",
              f"{b}/alice/x/.config/nerdctl/nerdctl.toml", f"{b}/../root/.config/nerdctl/nerdctl.toml",
              "/root/.config/nerdctl/nerdctl.toml", f"{b}/alice", f"{b}/alice/.config/docker/config.json"):
        assert not _covered(p), p
    assert {s.kind for s in cs if s.path.startswith(b + "/")} == {"user-file", "user-tree"}


HOST_PREFIXES = ("/etc/", "/usr/", "/var/", "/lib/", "/run/", "/sys/", "/sos_commands/")
# Literals that are not host files a fact reads: docstrings and messages aside (not checked), paths inside
# a registry container, a directory whose existence is the question, the Docker socket's address.
NOT_HOST_FILES = {
    "/var/lib/registry", "/etc/docker/registry/config.yml", "/tmp/registry", "/run/systemd/system",
    "/var/run/docker.sock", "/run/dbus/system_bus_socket", "/run/", "/var/lib/docker",
}


def test_facts_name_no_host_path_of_their_own() -> None:
    """Host paths live in the spec table; a fact module that spells one out bypasses `collect`."""
    found = []
    for py in sorted((REPO / "dockerdoctor" / "facts").glob("*.py")):
        tree = ast.parse(py.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and node.value.startswith(HOST_PREFIXES) and " " not in node.value
                    and node.value.rstrip("/") not in {p.rstrip("/") for p in NOT_HOST_FILES}):
                found.append(f"{py.relative_to(REPO)}:{node.lineno} {node.value}")
    assert not found, found
