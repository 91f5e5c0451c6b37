"""`dockerdoctor collect --script`: a POSIX sh collector generated from collect's own tables.

Unit part: the generator's semantics (links, redacted keys, the 4 MiB cut, mode and mtime, a command's
head or tail, hostile paths taken literally), run under real dash and busybox sh. Real part: on a lab
host (network, mount and UTS namespaces with its own /etc/docker, units, /etc/default and dockerd;
tests/fleet/fleetlab.py), the script under dash, and under busybox sh with a PATH of busybox applets
and the diagnostic tools only (no Python), gathers snapshots on which `check --root` finds exactly
what it finds on a snapshot that `dockerdoctor collect` made of the same host; and that snapshot gives
the live check's own findings, with the same evidence sources (the spec table's round trip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import lab
import pytest
from fleetkit import REPO, dd, need

from dockerdoctor.collect_script import MAX_BYTES, CollectSpec, collect_specs, render_script
from dockerdoctor.sources import specs

SHELLS = {"dash": ["dash"], "busybox": ["busybox", "sh"]}




def test_specs_are_collects_own_tables() -> None:
    from dockerdoctor.collect import DIRS, FILES
    from dockerdoctor.sources.base import COMMANDS

    specs = collect_specs()
    assert [s.path for s in specs if s.kind == "file"] == FILES
    assert [s.path for s in specs if s.kind == "tree"] == DIRS
    cmds = {s.path: s for s in specs if s.kind == "command"}
    for spec in COMMANDS.values():
        if "*" not in spec.sos[0] and "{" not in " ".join(spec.live):
            assert cmds[spec.sos[0]].argv == spec.live and cmds[spec.sos[0]].tail == spec.tail
    script = dd("collect", "--script").stdout
    assert script == render_script(specs) and script.startswith("#!/bin/sh\n")
    assert "python" not in script.lower().replace("no python", "")


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_generated_script_semantics_under_a_real_shell(shell: str, tmp_path: Path) -> None:
    need(SHELLS[shell][0])
    src = tmp_path / "host"
    (src / "etc" / "d").mkdir(parents=True)
    small = src / "etc" / "small.json"
    small.write_text('{"a": 1}\n')
    os.chmod(small, 0o640)
    os.utime(small, (1_600_000_000, 1_600_000_000))
    big = src / "etc" / "big.log"
    big.write_bytes(b"x" * (MAX_BYTES + 100))
    os.utime(big, (1_600_000_100, 1_600_000_100))
    (src / "etc" / "d" / "client.key").write_text("SECRET KEY\n")
    (src / "etc" / "d" / "ca.crt").write_text("CERT\n")
    (src / "etc" / "d" / "link.crt").symlink_to("ca.crt")
    (src / "etc" / "d" / "sub").mkdir()
    (src / "etc" / "d" / "dirlink").symlink_to("sub")
    odd = src / "etc" / "it's $(touch PWNED) `id` a;b"
    odd.write_text("odd\n")
    unit = src / "etc" / "docker.service"
    unit.write_text("[Service]\n")
    (src / "etc" / "docker.service.d").mkdir()
    (src / "etc" / "docker.service.d" / "10-x.conf").write_text("[Service]\nEnvironment=A=1\n")
    specs = [
        CollectSpec("file", str(small)), CollectSpec("file", str(big)), CollectSpec("file", str(odd)),
        CollectSpec("file", str(src / "missing")), CollectSpec("tree", str(src / "etc" / "d")),
        CollectSpec("unit", str(unit)),
        CollectSpec("command", "sos_commands/x/head", ("sh", "-c", "seq 1 3; echo '$HOME stays'")),
        CollectSpec("command", "sos_commands/x/tail", ("sh", "-c", f"head -c {MAX_BYTES + 10} /dev/zero; echo END"),
                    tail=True),
        CollectSpec("command", "sos_commands/x/none", ("no-such-program-here",)),
    ]
    script = tmp_path / "collect.sh"
    script.write_text(render_script(specs))
    out = tmp_path / "out"
    r = lab.run_group([*SHELLS[shell], str(script), str(out)], timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (tmp_path / "PWNED").exists() and not (src / "etc" / "PWNED").exists()
    got = lambda p: out / str(p).lstrip("/")  # noqa: E731
    assert got(small).read_text() == '{"a": 1}\n'
    assert (got(small).stat().st_mode & 0o777, got(small).stat().st_mtime) == (0o640, 1_600_000_000)
    assert got(big).stat().st_size == MAX_BYTES and got(big).stat().st_mtime == 1_600_000_100
    assert got(odd).read_text() == "odd\n"
    assert got(src / "etc/d/client.key").read_text() == "# private key not collected by dockerdoctor\n"
    assert os.readlink(got(src / "etc/d/link.crt")) == "ca.crt"
    assert not got(src / "etc/d/dirlink").exists() and not got(src / "etc/d/dirlink").is_symlink()
    assert got(src / "etc/docker.service.d/10-x.conf").read_text().endswith("A=1\n")
    assert (out / "sos_commands/x/head").read_text() == "1\n2\n3\n$HOME stays\n"
    tail = (out / "sos_commands/x/tail").read_bytes()
    assert len(tail) == MAX_BYTES and tail.endswith(b"\0END\n")
    assert not (out / "sos_commands/x/none").exists()
    manifest = (out / "dockerdoctor-collect.txt").read_text().splitlines()
    assert f"redacted {src}/etc/d/client.key" in manifest and f"link {src}/etc/d/link.crt" in manifest
    assert any(m.startswith("command sh -c seq 1 3") and m.endswith("(rc 0)") for m in manifest)
    with tarfile.open(f"{out}.tar.gz") as t:
        assert f"out/{str(small).lstrip('/')}" in t.getnames()
    again = lab.run_group([*SHELLS[shell], str(script), str(out)], timeout=60)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_the_script_copies_the_per_user_rows_as_collect_does(shell: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Rootless nerdctl/containerd files under /home/NAME/.config: the same files, bytes and mtimes as `collect`;
    links followed inside the home only; keys redacted; the bounds of the spec table."""
    from dockerdoctor import collect as collect_mod

    need(SHELLS[shell][0])
    base = tmp_path / "home"
    cfg = base / "alice" / ".config"

    def put(p: Path, text: str) -> Path:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.utime(p, (1_600_000_000, 1_600_000_000))
        return p

    put(cfg / "nerdctl/nerdctl.toml", 'namespace = "default"\n')
    put(cfg / "containerd/certs.d/10.0.0.5:5000/hosts.toml", 'server = "http://10.0.0.5:5000"\n')
    put(cfg / "containerd/certs.d/10.0.0.5:5000/client.key", "PRIVATE\n")
    put(base / "alice/dotfiles/ca.crt", "CERT\n")
    (cfg / "docker/certs.d/reg:5000").mkdir(parents=True)
    (cfg / "docker/certs.d/reg:5000/ca.crt").symlink_to("../../../../dotfiles/ca.crt")  # inside her home
    put(tmp_path / "secret", "NOT HERS\n")
    (base / "bob/.config/nerdctl").mkdir(parents=True)
    (base / "bob/.config/nerdctl/nerdctl.toml").symlink_to(tmp_path / "secret")  # out of his home
    (base / "carol/.config").mkdir(parents=True)
    (base / "carol/.config/containerd").symlink_to(tmp_path)  # a whole folder out of her home
    put(tmp_path / "config.toml", "NOT HERS\n")
    put(tmp_path / "certs.d/x/hosts.toml", "NOT HERS\n")
    put(base / "dave/.config/containerd/config.toml", "#" * 100)
    monkeypatch.setattr(specs, "HOME_BASE", str(base))
    monkeypatch.setattr(specs, "MAX_USER_FILE", 99)  # dave's file is over the bound
    rows = [s for s in collect_specs() if s.kind.startswith("user-")]
    assert len(rows) == len(specs.USER_FILES)
    monkeypatch.setattr(collect_mod, "collect_specs", lambda: rows)
    mine = tmp_path / "py"
    collect_mod.collect(mine)
    script = tmp_path / "collect.sh"
    script.write_text(render_script(rows))
    out = tmp_path / "sh"
    r = lab.run_group([*SHELLS[shell], str(script), str(out)], timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    def tree(d: Path) -> dict[str, tuple[str, float]]:
        return {str(p.relative_to(d)): (p.read_text(), p.stat().st_mtime) for p in d.rglob("*")
                if p.is_file() and not p.is_symlink() and p.name != "dockerdoctor-collect.txt"}

    want = tree(mine)
    rel = str(cfg).lstrip("/")
    key = f"{rel}/containerd/certs.d/10.0.0.5:5000/client.key"
    assert want == {
        f"{rel}/nerdctl/nerdctl.toml": ('namespace = "default"\n', 1_600_000_000),
        f"{rel}/containerd/certs.d/10.0.0.5:5000/hosts.toml": ('server = "http://10.0.0.5:5000"\n', 1_600_000_000),
        key: ("# private key not collected by dockerdoctor\n", want[key][1]),
        f"{rel}/docker/certs.d/reg:5000/ca.crt": ("CERT\n", 1_600_000_000),
    }
    got = tree(out)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}
    assert all(got[k][1] == v[1] for k, v in want.items() if not k.endswith(".key"))
    lines = set((out / "dockerdoctor-collect.txt").read_text().splitlines())
    assert {f"skipped {base}/bob/.config/nerdctl/nerdctl.toml: a link out of {base}/bob",
            f"skipped {base}/carol/.config/containerd/config.toml: a link out of {base}/carol",
            f"skipped {base}/carol/.config/containerd/certs.d: a link out of {base}/carol",
            f"skipped {base}/dave/.config/containerd/config.toml: over 99 bytes"} <= lines, lines
    py_lines = set((mine / "dockerdoctor-collect.txt").read_text().splitlines())
    assert {m for m in lines if m.startswith("skipped")} == {m for m in py_lines if m.startswith("skipped")}


# --------------------------------------------------------------------------- on a lab host

BUSYBOX_TOOLS = ("sh", "hostname", "uname", "date", "ls", "mkdir", "dirname", "basename", "readlink", "ln", "wc",
                 "cp", "dd", "touch", "find", "sort", "tail", "rm", "tar", "gzip", "grep", "cat", "pwd", "timeout",
                 "seq", "head", "env", "od", "tr", "awk")  # od, tr, awk: the secrets scrub
# Every program a spec-table command runs (sources/specs.py), so busybox's PATH offers what dash's does.
DIAGNOSTIC_TOOLS = tuple(sorted({spec.live[0] for spec in specs.COMMANDS.values()}
                                | {spec.argv[0] for spec in specs.CONTAINER_COMMANDS.values()}
                                | {specs.CONTAINER_LIST[0]}))


@pytest.fixture(scope="module")
def lab_host():  # type: ignore[no-untyped-def]
    from fleetlab import Fleet, python_for_hosts

    root = lab.make_workdir("collect")
    fleet = Fleet(root, f"ddc{os.getpid() % 100000}", python=python_for_hosts())
    try:
        reg = fleet.start_registry()
        # its own PID namespace: the snapshots' `ps` must not list whatever else this machine runs meanwhile
        h = fleet.add_host("old-centos", daemon_json={"debug": False}, pid_ns=True,
                           env_file_text=f'DOCKER_OPTS="--insecure-registry {reg.hostport}"\n')
        (h.etc_docker / "certs.d" / "reg.example:5000").mkdir(parents=True)
        (h.etc_docker / "certs.d" / "reg.example:5000" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
        (h.etc_docker / "certs.d" / "reg.example:5000" / "client.key").write_text("PRIVATE\n")
        yield fleet, h, reg
    finally:
        fleet.close()
        lab.rmtree(root)


def _busybox_path(d: Path) -> str:
    d.mkdir()
    bb = shutil.which("busybox")
    assert bb
    for tool in BUSYBOX_TOOLS:
        (d / tool).symlink_to(bb)
    for tool in DIAGNOSTIC_TOOLS:
        real = shutil.which(tool)
        if real:
            (d / tool).symlink_to(real)
    return str(d)


def _findings(snapshot: Path, registry: str) -> list[tuple]:
    r = dd("check", "--root", str(snapshot), "--registry", registry, "--format", "json", "--fail-on", "never")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    return sorted((f["id"], f["severity"], f["title"], f["message"],
                   tuple((e["source"], e["line"], e["text"]) for e in f["evidence"])) for f in data["findings"])


@pytest.mark.real("dash", "busybox", "sshd")
def test_script_on_a_lab_host_gives_the_findings_of_collect(lab_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet, h, reg = lab_host
    script = tmp_path / "collect.sh"
    script.write_text(dd("collect", "--script").stdout)
    base_env = {"DOCKER_HOST": h.docker_host, "HOME": "/root", "LANG": "C"}
    runs = {
        "python": ([sys.executable, "-m", "dockerdoctor", "collect", str(tmp_path / "py"), "--tar"],
                   {**base_env, "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}),
        "dash": (["dash", str(script), str(tmp_path / "dash")], {**base_env, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}),
        "busybox": ([str(Path(_busybox_path(tmp_path / "bin")) / "sh"), str(script), str(tmp_path / "busybox")],
                    {**base_env, "PATH": str(tmp_path / "bin")}),
    }
    for name, (argv, env) in runs.items():
        r = subprocess.run(h.inside(argv), capture_output=True, text=True, timeout=180, env=env,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (name, r.stdout, r.stderr)
    snaps = {"python": tmp_path / "py.tar.xz", "dash": tmp_path / "dash.tar.gz", "busybox": tmp_path / "busybox.tar.gz"}
    found = {name: _findings(p, reg.hostport) for name, p in snaps.items()}
    ids = {f[0] for f in found["python"]}
    # the host's real problem, seen through the snapshot (a snapshot is never probed, so no DD101/DD203 here)
    assert "DD102" in ids, found["python"]
    assert found["dash"] == found["python"]
    assert found["busybox"] == found["python"]

    # the same files, bytes, modes and mtimes; the same manifest apart from command rcs' order
    def files(d: Path) -> dict[str, tuple]:
        """Copied files with bytes, mode and mtime; a redacted key by its content only (a new file)."""
        return {str(p.relative_to(d)): (p.read_bytes(),) if p.name.endswith(".key") else
                (p.read_bytes(), p.stat().st_mode, int(p.stat().st_mtime))
                for p in d.rglob("*") if p.is_file() and not p.is_symlink()
                and not str(p.relative_to(d)).startswith(("sos_commands", "dockerdoctor-collect"))}

    py = files(tmp_path / "py")
    assert "etc/docker/daemon.json" in py and "etc/default/docker" in py and "etc/hostname" in py
    assert py["etc/docker/certs.d/reg.example:5000/client.key"][0] == b"# private key not collected by dockerdoctor\n"
    assert files(tmp_path / "dash") == py and files(tmp_path / "busybox") == py
    cmds = lambda d: sorted(str(p.relative_to(d)) for p in (d / "sos_commands").rglob("*") if p.is_file())  # noqa: E731
    assert cmds(tmp_path / "dash") == cmds(tmp_path / "py") == cmds(tmp_path / "busybox")
    assert (tmp_path / "busybox" / "etc/hostname").read_text().strip() == "old-centos"


# --------------------------------------------------------------------------- collect -> check --root = live check


def _report(argv: list[str], h, env: dict[str, str]) -> dict:  # type: ignore[no-untyped-def]
    r = subprocess.run(h.inside(argv), capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _cited(source: str, container_ids: dict[str, str]) -> str:
    """An evidence source as the same thing, live or in a snapshot: a host path as it is, a command's
    output by its spec key, a container's inspect or log by the container's name."""
    from dockerdoctor.sources.specs import COMMANDS, CONTAINER_COMMANDS

    if "system bus" in source or "D-Bus" in source:
        return "command firewall_state"  # firewalld's state: D-Bus live, its fallback `firewall-cmd --state` offline
    for key, spec in COMMANDS.items():
        if source == " ".join(spec.live) or source in spec.sos:
            return f"command {key}"
    for key, spec in CONTAINER_COMMANDS.items():
        head = spec.sos.split("{", 1)[0]
        if source.startswith(head):
            return f"{key} {source[len(head):]}"
    if source.startswith("Engine API /containers/"):
        short = source.split("/")[2]
        return f"docker_inspect {container_ids.get(short, short)}"
    if source.startswith("docker logs -t --tail "):
        return f"docker_logs {source.rsplit(' ', 1)[-1]}"
    return source.lstrip("/")


@pytest.mark.real("sshd")
def test_collect_then_check_root_finds_what_the_live_check_finds(lab_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The round trip the spec table exists for: what `collect` writes is all the facts read, so the
    snapshot gives the live check's findings (same ids, same evidence sources), apart from what only a
    live host can show (network probes, the Engine API's liveness, live-only rules)."""
    fleet, h, reg = lab_host
    image = lab.import_registry_image(h.dockerd)
    name = "ddc-rt-registry"
    # a registry with no volume (DD403) and its logs, run the way lab.md §10 runs one in a namespace
    r = h.dockerd.docker("run", "-d", "--name", name, "--network", "host", "-e", f"REGISTRY_HTTP_ADDR={h.ip}:5311",
                         image)
    assert r.returncode == 0, r.stderr
    try:
        cid = r.stdout.strip()
        base_env = {"DOCKER_HOST": h.docker_host, "HOME": "/root", "LANG": "C", "NO_COLOR": "1",
                    "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
        snap = tmp_path / "rt"
        c = subprocess.run(h.inside([sys.executable, "-m", "dockerdoctor", "collect", str(snap)]),
                           capture_output=True, text=True, timeout=180, env=base_env, stdin=subprocess.DEVNULL)
        assert c.returncode == 0, c.stderr
        assert (snap / f"sos_commands/docker/containers/docker_inspect_{name}").is_file()
        common = ["--registry", reg.hostport, "--format", "json", "--fail-on", "never"]
        live = _report([sys.executable, "-m", "dockerdoctor", "check", "-H", h.docker_host, *common], h, base_env)
        offline = _report([sys.executable, "-m", "dockerdoctor", "check", "--root", str(snap), *common], h, base_env)
    finally:
        h.dockerd.docker("rm", "-f", name)
    ids = {cid[:12]: name}
    ran_offline = {x["id"] for x in offline["rules"] if x["status"] not in ("skipped", "not_selected")}
    assert not [x for x in offline["rules"] + live["rules"] if x["status"] == "crashed"]

    def seen(rep: dict) -> set[tuple]:
        # Not comparable: what a network probe found (a snapshot is never probed), and DD501, which live asks
        # the Engine API while a snapshot reads `ps`, where this lab host (its own PID namespace) cannot see
        # the dockerd the lab started outside it.
        return {(f["id"], tuple(sorted({_cited(e["source"], ids) for e in f["evidence"]})))
                for f in rep["findings"] if f["id"] in ran_offline and f["id"] != "DD501"
                and not any(e["source"].startswith("probe ") for e in f["evidence"])}

    assert "DD102" in {f[0] for f in seen(live)}  # the host's env-file problem, with its file and line
    assert "DD403" in {f[0] for f in seen(live)}, seen(live)  # the container, from the Engine API
    assert seen(offline) == seen(live)
