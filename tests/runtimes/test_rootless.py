"""Rootless containerd and rootless nerdctl: detected in the per-user layout and read with file:line provenance.

The layout is containerd/nerdctl's (pkg/defaults/defaults_linux.go: NerdctlTOML, HostsDirs;
extras/rootless/containerd-rootless.sh bind-mounts $XDG_CONFIG_HOME/containerd on /etc/containerd inside
RootlessKit). rootlesskit and nerdctl are not packaged for Debian 12, so these tests write real files in that
layout and read them live (users under a temporary /home; this user's $XDG_CONFIG_HOME and $NERDCTL_TOML)
rather than running a rootless containerd. `collect` copies the per-user rows of the spec table, so
`check --root` finds the same (sos gathers no home directories).
"""

from __future__ import annotations

import os
from pathlib import Path

import lab
import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.model import RuleStatus
from dockerdoctor.runtimes.base import ImageRef
from dockerdoctor.sources.live import LiveSource
from dockerdoctor.sources.snapshot import SnapshotSource

REG = "10.0.0.5:5000"
HTTP_HOSTS = f'server = "http://{REG}"\n\n[host."http://{REG}"]\n  capabilities = ["pull", "resolve"]\n'


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """alice and bob under a temporary /home (the spec table's HOME_BASE), read live as root reads /home/*."""
    from dockerdoctor.runtimes import rootless
    from dockerdoctor.sources import specs

    base = tmp_path / "home"
    write(base, "alice/.config/nerdctl/nerdctl.toml", 'namespace = "default"\n')
    write(base, f"alice/.config/containerd/certs.d/{REG}/hosts.toml", HTTP_HOSTS)
    write(base, "alice/.config/containerd/config.toml",
          'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')
    # bob: nerdctl.toml names its own hosts_dir, and a hosts.toml there does not parse
    write(base, "bob/.config/nerdctl/nerdctl.toml", f'hosts_dir = ["{base}/bob/certs"]\n')
    write(base, f"bob/certs/{REG}/hosts.toml", '[host."http://10.0.0.5:5000"\n')
    monkeypatch.setattr(specs, "HOME_BASE", str(base))
    monkeypatch.setattr(rootless, "_process_users", lambda: [])  # this machine's own containerd users stay out
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return base


def live(**kw) -> Facts:
    return Facts(LiveSource(), CheckOptions(network=False, **kw))


def test_rootless_nerdctl_and_containerd_per_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = homes(tmp_path, monkeypatch)
    facts = live()
    nerd = {rt.display: rt for rt in facts.get("nerdctl_rootless")}
    assert set(nerd) == {"nerdctl rootless (alice)", "nerdctl rootless (bob)"}
    alice = nerd["nerdctl rootless (alice)"]
    certs = f"{base}/alice/.config/containerd/certs.d"
    assert alice.roots == (certs, f"{base}/alice/.config/docker/certs.d")
    (ep,) = [e for e in alice.resolve(ImageRef.parse(f"{REG}/app:1")).endpoints if e.role == "mirror"]
    assert ep.scheme == "http" and ep.origin.where() == f"{certs}/{REG}/hosts.toml:3"
    bob = nerd["nerdctl rootless (bob)"]
    assert bob.roots == (f"{base}/bob/certs",) and bob.origin.where() == f"{base}/bob/.config/nerdctl/nerdctl.toml:1"
    (ctd,) = facts.get("containerd_rootless")
    # config_path as rootless containerd sees it (/etc/containerd inside RootlessKit) -> the host path
    assert ctd.roots == (certs,)
    assert ctd.origin.where() == f"{base}/alice/.config/containerd/config.toml:4"
    assert any("as rootless containerd sees them" in n for n in ctd.notes)
    assert [e.scheme for e in ctd.resolve(ImageRef.parse(f"{REG}/app:1")).endpoints][0] == "http"
    names = {rt.name for rt in facts.get("runtimes")}
    assert {"nerdctl-rootless", "containerd-rootless"} <= names


def test_rules_on_the_rootless_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = homes(tmp_path, monkeypatch)
    # a rootful kubelet containerd too (pinned by its config.toml), whose config_path is not alice's directory
    cfg = write(tmp_path, "etc/containerd/config.toml",
                'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/nonexistent/certs.d"\n')
    facts = live(registries=[HostPort.parse(REG)], containerd_config=str(cfg))
    assert facts.get("containerd_cri").roots == ("/nonexistent/certs.d",)
    files = facts.get("containerd_hosts_files")
    assert f"{base}/alice/.config/containerd/certs.d/{REG}/hosts.toml" in files  # the per-user directories are read
    res = {r.rule_id: r for r in run_rules(facts, {"DD601", "DD602", "DD605"})}
    # bob's broken hosts.toml is named with its line; alice's files are read by her rootless clients (no DD602)
    assert [f.params["file"] for f in res["DD601"].findings] == [f"{base}/bob/certs/{REG}/hosts.toml"]
    assert res["DD601"].findings[0].evidence[0].line == 1
    assert not res["DD602"].findings and not res["DD605"].findings


def test_a_snapshot_reads_the_homes_it_holds_and_a_sosreport_has_none(tmp_path: Path) -> None:
    root = tmp_path / "host"
    write(root, "home/alice/.config/nerdctl/nerdctl.toml", 'hosts_dir = ["/etc/containerd/certs.d"] x\n')
    (root / "etc").mkdir()
    src = SnapshotSource(root)
    try:
        facts = Facts(src, CheckOptions(network=False))
        assert [h.config_home for h in facts.get("rootless_homes")] == ["/home/alice/.config"]
        (r,) = [r for r in run_rules(facts, {"DD601"}) if r.rule_id == "DD601"]
    finally:
        src.close()
    # the snapshot's own path, as the live host names it (never the snapshot directory's)
    assert [f.params["file"] for f in r.findings] == ["/home/alice/.config/nerdctl/nerdctl.toml"]
    sos = tmp_path / "sos"
    write(sos, "sos_commands/process/ps_auxwww", "USER PID\n")
    src = SnapshotSource(sos)
    try:
        facts = Facts(src, CheckOptions(network=False))
        assert facts.get("rootless_homes") == [] and facts.get("nerdctl_rootless") == []
        (r,) = [r for r in run_rules(facts, {"DD601"}) if r.rule_id == "DD601"]
    finally:
        src.close()
    assert r.status == RuleStatus.SKIPPED and "no containerd config.toml" in r.reason


def _dd6(facts: Facts, base: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(rule, file, evidence sources) of every DD6xx finding about a file under `base` (the temporary homes)."""
    out = []
    for r in run_rules(facts, {f"DD60{i}" for i in range(1, 8)}):
        for f in r.findings:
            where = (f.params.get("file") or "", *(e.source for e in f.evidence))
            if any(w.startswith(str(base)) for w in where):
                out.append((f.rule_id, f.params.get("file") or "", tuple(e.location() for e in f.evidence)))
    return sorted(out)


def _user_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """collect gathers its per-user rows (and /etc/os-release, so the output is a host root), nothing else of
    this machine."""
    from dockerdoctor import collect as collect_mod

    rows = [s for s in collect_mod.collect_specs() if s.kind.startswith("user-") or s.path == "/etc/os-release"]
    monkeypatch.setattr(collect_mod, "collect_specs", lambda: rows)


def test_collect_then_check_root_finds_what_the_live_check_finds(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.collect import collect

    base = homes(tmp_path, monkeypatch)
    # alice also has a hosts dir without the port (DD605), bob's broken hosts.toml is DD601; carol's nerdctl.toml
    # does not parse (DD601); dave's hosts.toml is a link out of his home (never collected)
    write(base, "alice/.config/containerd/certs.d/10.0.0.8/hosts.toml", HTTP_HOSTS.replace(REG, "10.0.0.8:5000"))
    write(base, "alice/.config/containerd/certs.d/10.0.0.8/ca.key", "PRIVATE\n")
    write(base, "carol/.config/nerdctl/nerdctl.toml", "hosts_dir = [\n")
    write(tmp_path, "outside/hosts.toml", HTTP_HOSTS)
    write(tmp_path, "outside/config.toml", "version = 2\n")
    (base / "dave/.config/docker/certs.d").mkdir(parents=True)
    (base / "dave/.config/docker/certs.d/leak.toml").symlink_to(tmp_path / "outside/hosts.toml")
    write(base, "frank/dotfiles/nerdctl.toml", "hosts_dir = [\n")  # a link inside his home is followed
    (base / "frank/.config/nerdctl").mkdir(parents=True)
    (base / "frank/.config/nerdctl/nerdctl.toml").symlink_to("../../dotfiles/nerdctl.toml")
    (base / "erin/.config").mkdir(parents=True)
    (base / "erin/.config/containerd").symlink_to(tmp_path / "outside")
    _rootless_dockerd(base)  # gina's rootless dockerd on the containerd store: DD606 from her daemon.json
    opts = {"registries": [HostPort.parse(REG), HostPort.parse("10.0.0.8:5000")]}
    facts = live(**opts)
    want = _dd6(facts, base)
    assert {w[0] for w in want} >= {"DD601", "DD605", "DD606"}, want
    assert ("DD601", f"{base}/frank/.config/nerdctl/nerdctl.toml", (f"{base}/frank/.config/nerdctl/nerdctl.toml",)) \
        in want
    # read live as root, a link out of a home leads nowhere either (erin's config.toml, dave's file)
    assert not [rt for rt in facts.get("containerd_rootless") if rt.owner == "erin"]
    assert facts.source.read_text(f"{base}/dave/.config/docker/certs.d/leak.toml") is None
    assert facts.source.read_text(f"{base}/alice/.config/nerdctl/nerdctl.toml") is not None
    _user_rows_only(monkeypatch)
    snap = tmp_path / "snap"
    manifest = collect(snap)
    assert f"file {base}/alice/.config/nerdctl/nerdctl.toml" in manifest
    assert f"file {base}/gina/.config/docker/daemon.json" in manifest
    assert f"file {base}/gina/.config/systemd/user/docker.service" in manifest
    assert f"redacted {base}/alice/.config/containerd/certs.d/10.0.0.8/ca.key" in manifest
    assert f"skipped {base}/dave/.config/docker/certs.d/leak.toml: a link out of {base}/dave" in manifest
    assert f"skipped {base}/erin/.config/containerd/config.toml: a link out of {base}/erin" in manifest
    assert not (snap / str(tmp_path / "outside").lstrip("/")).exists()
    assert not (snap / str(base / "bob/certs").lstrip("/")).exists()  # bob's own hosts_dir is not a spec row
    assert (snap / str(base / "alice/.config/containerd/certs.d/10.0.0.8/ca.key").lstrip("/")).read_text() \
        .startswith("# private key not collected")
    src = SnapshotSource(snap)
    try:
        got = _dd6(Facts(src, CheckOptions(network=False, **opts)), base)
    finally:
        src.close()
    # bob's hosts_dir outside the per-user rows is read live only: everything else is the same
    bob = [w for w in want if w[1].startswith(f"{base}/bob/certs/")]
    assert bob and got == [w for w in want if w not in bob]


def test_collect_bounds_the_per_user_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.collect import collect
    from dockerdoctor.sources import specs

    base = homes(tmp_path, monkeypatch)
    monkeypatch.setattr(specs, "MAX_USER_TREE_FILES", 2)
    monkeypatch.setattr(specs, "MAX_USER_FILE", 64)
    monkeypatch.setattr(specs, "MAX_USER_HOMES", 1)  # alice only
    for i in range(3):
        write(base, f"alice/.config/docker/certs.d/h{i}/ca.crt", "x\n")
    write(base, "alice/.config/containerd/certs.d/big/hosts.toml", "#" * 65)
    write(base, "alice/.config/nerdctl/nerdctl.toml", 'hosts_dir = ["http://u:s3cret@x"]\n')  # secrets scrubbed too
    _user_rows_only(monkeypatch)
    manifest = collect(tmp_path / "snap")
    toml = tmp_path / "snap" / str(base / "alice/.config/nerdctl/nerdctl.toml").lstrip("/")
    assert "s3cret" not in toml.read_text() and "redacted-" in toml.read_text()
    d = f"{base}/alice/.config/docker/certs.d"
    assert f"skipped 1 files of {d}: over 2" in manifest
    assert [m for m in manifest if m.startswith(f"file {d}/")] == [f"file {d}/h0/ca.crt", f"file {d}/h1/ca.crt"]
    assert f"skipped {base}/alice/.config/containerd/certs.d/big/hosts.toml: over 64 bytes" in manifest
    assert not any("/bob/" in m for m in manifest)


def test_live_user_from_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    write(xdg, "nerdctl/nerdctl.toml", '# mine\nhosts_dir = ["%s"]\ninsecure_registry = true\n' % (xdg / "c"))
    write(xdg, f"c/{REG}/hosts.toml", HTTP_HOSTS)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as a user other than root
    facts = Facts(LiveSource(), CheckOptions(network=False))
    homes = [h for h in facts.get("rootless_homes") if h.config_home == str(xdg)]
    assert homes and homes[0].why == "this user's $XDG_CONFIG_HOME"
    (rt,) = [r for r in facts.get("nerdctl_rootless") if r.origin.source == str(xdg / "nerdctl/nerdctl.toml")]
    assert rt.origin.line == 2 and rt.roots == (str(xdg / "c"),) and rt.insecure_all
    eps = rt.resolve(ImageRef.parse(f"{REG}/app:1")).endpoints
    assert eps[0].scheme == "http" and eps[0].origin.source == str(xdg / f"c/{REG}/hosts.toml")


def test_nerdctl_toml_env_overrides_for_this_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write(tmp_path, "elsewhere/n.toml", 'hosts_dir = ["/srv/certs"]\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("NERDCTL_TOML", str(other))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    facts = Facts(LiveSource(), CheckOptions(network=False))
    (rt,) = [r for r in facts.get("nerdctl_rootless") if r.origin.source == str(other)]
    assert rt.roots == ("/srv/certs",)


def test_root_is_not_rootless(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path, "xdg/nerdctl/nerdctl.toml", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts = Facts(LiveSource(), CheckOptions(network=False))
    assert all(h.config_home != str(tmp_path / "xdg") for h in facts.get("rootless_homes"))


def test_a_nerdctl_toml_that_does_not_parse_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # rootful, in a snapshot
    root = tmp_path / "host"
    write(root, "etc/nerdctl/nerdctl.toml", 'namespace = "k8s.io"\nhosts_dir = ["/etc/containerd/certs.d"] x\n')
    src = SnapshotSource(root)
    try:
        (r,) = [r for r in run_rules(Facts(src, CheckOptions(network=False)), {"DD601"}) if r.rule_id == "DD601"]
    finally:
        src.close()
    (f,) = r.findings
    assert f.params["file"] == "/etc/nerdctl/nerdctl.toml" and f.evidence[0].line == 2, f
    assert "nerdctl cannot load it" in f.message
    # rootless, live: the user's own file
    base = homes(tmp_path, monkeypatch)
    (base / "bob/.config/nerdctl/nerdctl.toml").write_text("hosts_dir = [\n")
    found = [x for r in run_rules(live(), {"DD601"}) if r.rule_id == "DD601" for x in r.findings]
    assert f"{base}/bob/.config/nerdctl/nerdctl.toml" in {x.params["file"] for x in found}


def test_a_fix_in_a_users_home_gives_the_files_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.fixes.containerd_recipes import trust_fix
    from dockerdoctor.model import ReplaceFileContent, RunCommand

    base = homes(tmp_path, monkeypatch)
    write(base, "carol/.config/nerdctl/nerdctl.toml", "")  # carol has no containerd/ directory yet
    nerd = {rt.owner: rt for rt in live().get("nerdctl_rootless")}
    fix = trust_fix(nerd["alice"], "10.0.0.7:5000", plain=True)
    assert fix is not None
    (write_op,) = fix.operations
    assert isinstance(write_op, ReplaceFileContent)
    assert write_op.path == f"{base}/alice/.config/containerd/certs.d/10.0.0.7:5000/hosts.toml"
    # no `chown -R` (it follows links): apply gives what it created back, confined to the home
    assert fix.owner == ("alice", f"{base}/alice")
    assert not [op for op in fix.operations if isinstance(op, RunCommand)]
    assert all(a.owner == fix.owner for a in fix.alternatives)  # the TLS alternative too
    carol = trust_fix(nerd["carol"], "10.0.0.7:5000", plain=True)
    assert carol is not None and carol.owner == ("carol", f"{base}/carol")


def _user_step(fix):  # type: ignore[no-untyped-def]
    from dockerdoctor.fixes.choose import Choice
    from dockerdoctor.model import Finding, Severity

    return Choice(Finding("DD604", Severity.ERROR, "t", "m", fix=fix), fix)


def test_a_fix_in_a_users_home_never_writes_through_a_link_out_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who links ~/.config/containerd/certs.d (or a parent) to the system's certs.d must not get root
    to write there and hand her that folder: the plan refuses it, and so does apply when the link is put in
    after the plan. The "system" folder is a private temp one, never the machine's /etc/containerd."""
    from dockerdoctor.fixes.apply import ApplyOptions, Transaction
    from dockerdoctor.fixes.backup import BackupStore
    from dockerdoctor.fixes.containerd_recipes import trust_fix
    from dockerdoctor.fixes.prepare import prepare

    base = homes(tmp_path, monkeypatch)
    system = tmp_path / "host-etc/containerd/certs.d"
    write(system, "docker.io/hosts.toml", 'server = "https://registry-1.docker.io"\n')
    before = sorted(p.name for p in system.iterdir())
    write(base, "mallory/.config/nerdctl/nerdctl.toml", "")
    (base / "mallory/.config/containerd").mkdir(parents=True)
    (base / "mallory/.config/containerd/certs.d").symlink_to(system)
    facts = live()
    nerd = {rt.owner: rt for rt in facts.get("nerdctl_rootless")}
    fix = trust_fix(nerd["mallory"], "10.0.0.7:5000", plain=True)
    assert fix is not None and fix.owner == ("mallory", f"{base}/mallory")
    prepared = prepare([_user_step(fix)], facts)
    (step,) = prepared.steps
    assert step.errors and "refused" in step.errors[0] and str(system) in step.errors[0], step.errors
    assert not prepared.changes and not prepared.applicable
    # a parent linked instead (~/.config/containerd -> the system's containerd dir)
    (base / "mallory/.config/containerd/certs.d").unlink()
    (base / "mallory/.config/containerd").rmdir()
    (base / "mallory/.config/containerd").symlink_to(system.parent)
    assert prepare([_user_step(fix)], live()).steps[0].errors
    # the link put in after the plan: apply refuses and rolls back, the system folder is as it was
    (base / "mallory/.config/containerd").unlink()
    prepared = prepare([_user_step(fix)], live())
    assert prepared.changes and not prepared.steps[0].errors
    (base / "mallory/.config/containerd").symlink_to(system.parent)
    facts = live()
    result = Transaction(prepared, facts, ApplyOptions(BackupStore(tmp_path / "state")))._apply()
    assert result.status == "rolled-back" and "refused" in " ".join(result.problems), result
    assert sorted(p.name for p in system.iterdir()) == before
    assert os.stat(system).st_uid == 0


def test_apply_gives_only_what_it_created_to_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    from dockerdoctor.fixes.apply import ApplyOptions, Transaction
    from dockerdoctor.fixes.backup import BackupStore
    from dockerdoctor.fixes.containerd_recipes import trust_fix
    from dockerdoctor.fixes.prepare import prepare

    if os.geteuid() != 0:
        lab.cannot_run("chown needs root")
    nobody = pwd.getpwnam("nobody")
    base = homes(tmp_path, monkeypatch)
    write(base, "nobody/.config/nerdctl/nerdctl.toml", "")
    # a root-owned file reached by links inside the tree the fix creates: it must stay root's. The links are
    # put there once the fix has written its files and before it hands them over (a chown -R, or a walk
    # with os.chown following links, would give the file to the user).
    from dockerdoctor.fixes import apply as apply_mod

    other = tmp_path / "root-file"
    other.write_text("x")
    cfg = base / "nobody/.config"
    certs = cfg / "containerd/certs.d"
    links = (certs / "root-symlink", certs / "root-hardlink")
    real_give_to = apply_mod.give_to

    def give_to(*a, **kw):  # type: ignore[no-untyped-def]
        links[0].symlink_to(other)
        os.link(other, links[1])
        return real_give_to(*a, **kw)

    monkeypatch.setattr(apply_mod, "give_to", give_to)
    facts = live()
    fix = trust_fix({rt.owner: rt for rt in facts.get("nerdctl_rootless")}["nobody"], "10.0.0.7:5000", plain=True)
    prepared = prepare([_user_step(fix)], facts)
    result = Transaction(prepared, facts, ApplyOptions(BackupStore(tmp_path / "state")))._apply()
    assert result.status == "applied", result
    assert all(os.path.lexists(p) for p in links)  # the handover ran with the links in the tree
    for p in (cfg / "containerd", certs, certs / "10.0.0.7:5000", certs / "10.0.0.7:5000/hosts.toml"):
        assert os.lstat(p).st_uid == nobody.pw_uid, p
    assert os.stat(cfg).st_uid == 0 and os.stat(other).st_uid == 0  # not created by the fix: untouched
    assert all(os.lstat(p).st_uid == 0 for p in links)
    for p in links:  # not the fix's: out of the way of its rollback
        p.unlink()
    from dockerdoctor.fixes.apply import rollback_run

    assert result.run_id and rollback_run(BackupStore(tmp_path / "state"), result.run_id).status == "rolled-back"
    assert not (cfg / "containerd").exists()  # what it created is gone again


def test_dd605_in_a_users_home_gives_the_copy_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = homes(tmp_path, monkeypatch)
    write(base, "alice/.config/containerd/certs.d/10.0.0.8/hosts.toml", HTTP_HOSTS.replace(REG, "10.0.0.8:5000"))
    found = [f for r in run_rules(live(registries=[HostPort.parse("10.0.0.8:5000")]), {"DD605"})
             if r.rule_id == "DD605" for f in r.findings]
    mine = [f for f in found if f.params["file"].startswith(f"{base}/alice/")]
    assert mine and mine[0].fix is not None
    assert mine[0].fix.owner == ("alice", f"{base}/alice")


def test_giving_files_back_never_follows_a_link(tmp_path: Path) -> None:
    from dockerdoctor.fixes.paths import dir_below, give_to

    if os.geteuid() != 0:
        lab.cannot_run("chown needs root")
    home, outside = tmp_path / "home/u", tmp_path / "etc-certs.d"
    (home / ".config/containerd").mkdir(parents=True)
    outside.mkdir()
    (outside / "hosts.toml").write_text("")
    (home / ".config/containerd/certs.d").symlink_to(outside)
    link = home / ".config/containerd/certs.d"
    give_to(str(home), [".config/containerd/certs.d"], 65534, 65534)
    assert os.lstat(link).st_uid == 65534  # the link itself, never what it points to
    with pytest.raises(OSError):
        give_to(str(home), [".config/containerd/certs.d/hosts.toml"], 65534, 65534)
    assert os.stat(outside).st_uid == 0 and os.stat(outside / "hosts.toml").st_uid == 0
    with pytest.raises(OSError):  # what --apply writes through: no link on the way, even one put in late
        dir_below(str(home), ".config/containerd/certs.d")
    os.close(dir_below(str(home), ".config/containerd"))


def test_a_rollback_in_a_users_home_never_follows_a_link_she_put_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.fixes.apply import ApplyOptions, Transaction, rollback_run
    from dockerdoctor.fixes.backup import BackupError, BackupStore
    from dockerdoctor.fixes.containerd_recipes import trust_fix
    from dockerdoctor.fixes.prepare import prepare

    if os.geteuid() != 0:
        lab.cannot_run("chown needs root")
    base = homes(tmp_path, monkeypatch)
    write(base, "nobody/.config/nerdctl/nerdctl.toml", "")
    system = tmp_path / "host-etc/containerd/certs.d"  # private, never the machine's
    keep = write(system, "10.0.0.7:5000/hosts.toml", "system's own\n")
    facts = live()
    fix = trust_fix({rt.owner: rt for rt in facts.get("nerdctl_rootless")}["nobody"], "10.0.0.7:5000", plain=True)
    store = BackupStore(tmp_path / "state")
    result = Transaction(prepare([_user_step(fix)], facts), facts, ApplyOptions(store))._apply()
    assert result.status == "applied" and result.run_id
    mine = base / "nobody/.config/containerd"
    os.rename(mine, tmp_path / "moved")
    mine.symlink_to(system.parent)  # her containerd/ now leads to the system's
    with pytest.raises(BackupError):
        rollback_run(store, result.run_id)
    with pytest.raises(BackupError, match="not restored"):  # even without the "changed since" check
        store.restore_files(store.load(result.run_id))
    assert keep.read_text() == "system's own\n"


def test_dd602_a_hosts_toml_left_in_the_default_dir_that_hosts_dir_replaced(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    base = homes(tmp_path, monkeypatch)
    # erin: nerdctl.toml points hosts_dir elsewhere, her hosts.toml sits in the default ~/.config/containerd/certs.d
    # (no rootless containerd config of hers reads that directory either)
    toml = write(base, "erin/.config/nerdctl/nerdctl.toml",
                 f'namespace = "default"\nhosts_dir = ["{base}/erin/registries"]\n')
    unused = write(base, f"erin/.config/containerd/certs.d/{REG}/hosts.toml", HTTP_HOSTS)
    facts = live(registries=[HostPort.parse(REG)])
    assert str(unused) in facts.get("containerd_hosts_files")  # read, so that DD602 can name it
    (r,) = [r for r in run_rules(facts, {"DD602"}) if r.rule_id == "DD602"]
    (f,) = [f for f in r.findings if f.params["file"].startswith(f"{base}/")]  # alice's, read by her clients: none
    assert f.params["file"] == str(unused) and f.params["runtime"] == "nerdctl-rootless"
    assert [e.location() for e in f.evidence] == [str(unused), f"{toml}:2"]
    assert "nerdctl rootless (erin)" in f.title and f"{toml}:2 sets hosts_dir" in f.message
    # a rootless containerd of hers that reads the directory: the file is used, no DD602
    write(base, "erin/.config/containerd/config.toml",
          'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')
    (r,) = [r for r in run_rules(live(), {"DD602"}) if r.rule_id == "DD602"]
    assert not [f for f in r.findings if f.params["file"].startswith(f"{base}/")]
    # without hosts_dir nerdctl reads its defaults: no DD602
    (base / "erin/.config/containerd/config.toml").unlink()
    toml.write_text('namespace = "default"\n')
    (r,) = [r for r in run_rules(live(), {"DD602"}) if r.rule_id == "DD602"]
    assert not [f for f in r.findings if f.params["file"].startswith(f"{base}/")]


def _rootless_dockerd(base: Path, user: str = "gina") -> Path:
    """A rootless dockerd's files as dockerd-rootless-setuptool.sh leaves them: the user unit, daemon.json."""
    write(base, f"{user}/.config/systemd/user/docker.service", "[Service]\nExecStart=/usr/bin/dockerd-rootless.sh\n")
    return write(base, f"{user}/.config/docker/daemon.json",
                 '{\n  "features": {"containerd-snapshotter": true},\n  "insecure-registries": ["10.0.0.5:5000"]\n}\n')


def test_rootless_dockerd_on_the_containerd_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = homes(tmp_path, monkeypatch)
    dj = _rootless_dockerd(base)
    write(base, "hank/.config/docker/daemon.json", '{"insecure-registries": ["10.0.0.5:5000"]}\n')  # no dockerd
    facts = live(registries=[HostPort.parse(REG)])
    (rt,) = facts.get("dockerd_rootless")
    assert rt.owner == "gina" and rt.roots == (f"{base}/gina/.config/docker/certs.d",)
    assert rt.origin.where() == f"{dj}:2" and "docker.service exists" in rt.origin.detail
    assert rt in facts.get("containerd_runtimes")
    (r,) = [r for r in run_rules(facts, {"DD606"}) if r.rule_id == "DD606"]
    (f,) = [f for f in r.findings if f.params.get("runtime") == "dockerd-rootless-containerd-store"]
    assert [e.location() for e in f.evidence] == [f"{dj}:3", f"{dj}:2"]
    assert f.fix is not None and f.fix.operations[0].path == f"{base}/gina/.config/docker/certs.d/{REG}/hosts.toml"  # type: ignore[attr-defined]
    assert f.fix.owner == ("gina", f"{base}/gina")  # confined to her home, what it creates given to her
    # DD604 judges it like the other containerd-family runtimes (here: the journal says plain HTTP)
    from dockerdoctor.facts.host import Journal, TargetRegistry

    j = Journal("journal", [f'failed to do request: Head "https://{REG}/v2/a/manifests/1": http: server gave '
                            'HTTP response to HTTPS client'])
    seeded = Facts.from_values({"target_registries": [TargetRegistry(HostPort.parse(REG), "--registry", True)],
                                "containerd_runtimes": [rt], "containerd_journal": j})
    (r,) = [r for r in run_rules(seeded, {"DD604"}) if r.rule_id == "DD604"]
    (f,) = r.findings
    assert f.params["runtime"] == "dockerd-rootless-containerd-store" and f.fix is not None
    assert f.fix.operations[0].path == f"{base}/gina/.config/docker/certs.d/{REG}/hosts.toml"  # type: ignore[attr-defined]
    # with the hosts.toml in her certs.d: silent; DD602 does not call it unused (her dockerd reads it)
    write(base, f"gina/.config/docker/certs.d/{REG}/hosts.toml", HTTP_HOSTS)
    res = {r.rule_id: r for r in run_rules(live(registries=[HostPort.parse(REG)]), {"DD602", "DD606"})}
    assert not [f for r in res.values() for f in r.findings if "gina" in f.params.get("file", f.message)]
    # the classic store (no containerd-snapshotter): not modelled here
    dj.write_text('{"insecure-registries": ["10.0.0.5:5000"]}\n')
    assert live().get("dockerd_rootless") == []


def test_rootless_dockerd_in_a_snapshot_by_its_process(tmp_path: Path) -> None:
    root = tmp_path / "host"
    dj = _rootless_dockerd(root / "home")
    (root / "home/gina/.config/systemd/user/docker.service").unlink()  # a snapshot without the unit (an older
    # collect's, or a script run that could not read it; collect now copies systemd/user/docker.service): ps says
    write(root, "sos_commands/process/ps_auxwww",
          "USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND\n"
          "gina 2101 0.0 0.1 1000 100 ? Sl 07:00 0:00 rootlesskit --net=slirp4netns dockerd-rootless.sh\n"
          "gina 2140 0.1 1.0 9000 900 ? Sl 07:00 0:01 dockerd\n")
    (root / "etc").mkdir()
    src = SnapshotSource(root)
    try:
        facts = Facts(src, CheckOptions(network=False, registries=[HostPort.parse(REG)]))
        (rt,) = facts.get("dockerd_rootless")
        (r,) = [r for r in run_rules(facts, {"DD606"}) if r.rule_id == "DD606"]
    finally:
        src.close()
    assert "ps_auxwww:3: dockerd runs as gina" in rt.origin.detail
    assert [f.evidence[0].location() for f in r.findings] == ["/home/gina/.config/docker/daemon.json:3"]
    assert str(dj).endswith("/home/gina/.config/docker/daemon.json")


# --------------------------------------------------------------------- root reads only inside the user's home

SECRET_CONF = ('version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
               '  config_path = "/etc/containerd/secret.d"\n')


def _outside_tree(tmp_path: Path) -> Path:
    """A directory root can read and the user cannot: what her config names must not make root read it."""
    out = tmp_path / "rootonly"
    write(out, "x.toml", SECRET_CONF)
    write(out, f"ssh/{REG}/hosts.toml", HTTP_HOSTS)
    return out


def _eve(base: Path, out: Path, homedir: str) -> None:
    """eve's config.toml imports files outside her home (by name and through a link in it); her nerdctl.toml
    names an outside hosts_dir and a link in her home to one."""
    write(base, "eve/.config/containerd/config.toml",
          f'version = 2\nimports = ["{out}/*.toml", "{homedir}/.config/containerd/conf.d/*.toml"]\n\n'
          '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')
    (base / "eve/.config/containerd/conf.d").mkdir(parents=True)
    (base / "eve/.config/containerd/conf.d/y.toml").symlink_to(out / "x.toml")
    write(base, "eve/.config/nerdctl/nerdctl.toml", f'hosts_dir = ["{out}/ssh", "{homedir}/link"]\n')
    (base / "eve/link").symlink_to(out / "ssh")


def _check_eve(facts: Facts, out: Path, homedir: str) -> None:
    (ctd,) = [rt for rt in facts.get("containerd_rootless") if rt.owner == "eve"]
    assert ctd.roots == (f"{homedir}/.config/containerd/certs.d",)  # secret.d's config_path was never read
    assert ctd.config.imported == []
    assert f"{out}: outside eve's home, not read as root" in ctd.notes
    (nerd,) = [rt for rt in facts.get("nerdctl_rootless") if rt.owner == "eve"]
    assert f"{out}/ssh: outside eve's home, not read as root" in nerd.notes
    eps = nerd.resolve(ImageRef.parse(f"{REG}/app:1")).endpoints
    assert not any(e.scheme == "http" for e in eps)  # the hosts.toml out there stays unread


def test_rootless_paths_a_user_names_outside_her_home_are_not_read_as_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = homes(tmp_path, monkeypatch)
    out = _outside_tree(tmp_path)
    _eve(base, out, f"{base}/eve")
    facts = live()
    _check_eve(facts, out, f"{base}/eve")
    (nerd,) = [rt for rt in facts.get("nerdctl_rootless") if rt.owner == "eve"]
    assert f"{base}/eve/link: outside eve's home, not read as root" in nerd.notes  # a link in her home, out
    (ctd,) = [rt for rt in facts.get("containerd_rootless") if rt.owner == "eve"]
    assert f"{base}/eve/.config/containerd/conf.d/y.toml: outside eve's home, not read as root" in ctd.notes


def test_a_snapshot_ignores_the_same_outside_paths(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    out = Path("/rootonly")  # as the host names it; the snapshot holds a copy that must stay unread
    write(root, "rootonly/x.toml", SECRET_CONF)
    write(root, f"rootonly/ssh/{REG}/hosts.toml", HTTP_HOSTS)
    write(root, "home/eve/.config/containerd/config.toml",
          f'version = 2\nimports = ["{out}/*.toml"]\n\n'
          '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')
    write(root, "home/eve/.config/nerdctl/nerdctl.toml", f'hosts_dir = ["{out}/ssh"]\n')
    src = SnapshotSource(root)
    try:
        facts = Facts(src, CheckOptions(network=False))
        (ctd,) = facts.get("containerd_rootless")
        assert ctd.roots == ("/home/eve/.config/containerd/certs.d",) and ctd.config.imported == []
        assert f"{out}: outside eve's home, not read as root" in ctd.notes
        (nerd,) = facts.get("nerdctl_rootless")
        assert f"{out}/ssh: outside eve's home, not read as root" in nerd.notes
        assert not any(e.scheme == "http" for e in nerd.resolve(ImageRef.parse(f"{REG}/app:1")).endpoints)
    finally:
        src.close()


def test_a_rootless_process_xdg_config_home_outside_her_home_is_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd
    from types import SimpleNamespace

    import psutil

    from dockerdoctor.runtimes import rootless

    home, out = tmp_path / "srv/eve", _outside_tree(tmp_path)
    write(home, ".config/nerdctl/nerdctl.toml", 'namespace = "default"\n')
    write(out, "cfg/nerdctl/nerdctl.toml", f'hosts_dir = ["{out}/ssh"]\n')
    (home / "xdg").symlink_to(out / "cfg")  # inside by name, outside through the link

    class Proc:
        def __init__(self, pid: int, xdg: str) -> None:
            self.info = {"pid": pid, "cmdline": ["containerd"], "uids": SimpleNamespace(real=1000)}
            self.xdg = xdg

        def environ(self) -> dict[str, str]:
            return {"XDG_CONFIG_HOME": self.xdg}

    for xdg in (f"{out}/cfg", f"{home}/xdg"):
        monkeypatch.setattr(psutil, "process_iter", lambda attrs, x=xdg: [Proc(41, x)])
        monkeypatch.setattr(pwd, "getpwuid", lambda uid: SimpleNamespace(pw_name="eve", pw_dir=str(home)))
        (h,) = rootless._process_users()
        assert h.config_home == f"{home}/.config" and h.home == str(home)
        assert h.ignored == (f"$XDG_CONFIG_HOME={xdg} of pid 41: outside eve's home, not read as root",)
    ok = rootless.RootlessHome("eve", f"{home}/.config", "test", home_dir=str(home))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts = live()
    c = rootless.Confined(facts, ok)
    assert c.read(f"{home}/.config/nerdctl/nerdctl.toml") == 'namespace = "default"\n'
    src = facts.source
    assert isinstance(src, LiveSource)  # outside HOME_BASE too: opened below her home without following links
    assert src.read_in(str(home), f"{home}/.config/nerdctl/nerdctl.toml") == 'namespace = "default"\n'
    assert src.read_in(str(home), f"{home}/xdg/nerdctl/nerdctl.toml") is None
    assert c.read(f"{home}/xdg/nerdctl/nerdctl.toml") is None and c.listdir(str(out)) is None
    assert c.ignored == [f"{home}/xdg/nerdctl/nerdctl.toml: outside eve's home, not read as root",
                         f"{out}: outside eve's home, not read as root"]
