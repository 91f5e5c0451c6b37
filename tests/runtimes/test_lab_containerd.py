"""Differential tests against the real containerd 1.6 (Debian's): what the adapter predicts for a hosts.toml
equals what `ctr image pull --hosts-dir` did, witnessed by each lab registry's access log.

One lab per session: a plain-HTTP registry, a TLS one (lab CA), an empty one and a second plain mirror,
all in the server namespace; containerd with its own root/state/socket in the client namespace; every
pull runs there (ip netns exec). Where containerd 1.6.20 departs from containerd's docs, the case says
so (DOCS_DIFFER) and the adapter models what 1.6 does.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockerdoctor.runtimes.base import ImageRef
from dockerdoctor.runtimes.containerd_config import cri_refusal, parse_containerd_config
from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime
from tests import lab
from tests.lab_containerd import Containerd, push_oci_image, write_oci_layout

pytestmark = pytest.mark.real("containerd", "ctr", "skopeo", "nsenter")

VERSION = (1, 6)
PORTS = {"plain": 5140, "tls": 5141, "empty": 5142, "m2": 5143}
HEAD = re.compile(r'"HEAD /v2/lab/hello/manifests/v1(?:\?ns=[^ ]*)? HTTP/1\.1" (\d{3})')


@dataclass
class CtdLab:
    root: Path
    net: lab.LabNet
    regs: dict[str, lab.DistRegistry]
    ca: Path
    ctd: Containerd

    def hp(self, name: str) -> str:
        return self.regs[name].hostport


@pytest.fixture(scope="session")
def ctd_lab(lab_root: Path, labnet: lab.LabNet, certs) -> Iterator[CtdLab]:
    w = lab_root / "containerd"
    w.mkdir()
    shared = {"storage": {"filesystem": {"rootdirectory": str(w / "shared")}}}
    regs: dict[str, lab.DistRegistry] = {}
    ctd = None
    try:
        for name, port in PORTS.items():
            regs[name] = lab.DistRegistry(
                w, labnet.srv_ip, port, netns=labnet.srv_ns, tls=certs.good if name == "tls" else None,
                extra_config=None if name == "empty" else shared, name=f"ctd-{name}").start()
        push_oci_image(labnet.cli_ns, write_oci_layout(w / "oci"), f"{regs['plain'].hostport}/lab/hello:v1", False)
        ctd = Containerd(w / "ctd", netns=labnet.cli_ns, config_path=str(w / "certs.d")).start()
        yield CtdLab(w, labnet, regs, certs.ca_path, ctd)
    finally:
        if ctd is not None:
            ctd.stop()
        for r in regs.values():
            r.stop()


def _fs_lister(path: str) -> list[str] | None:
    try:
        return os.listdir(path)
    except OSError:
        return None


def _fs_reader(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _ctr_adapter(hosts_dir: Path) -> HostsDirRuntime:
    return HostsDirRuntime("ctr", "ctr --hosts-dir", (str(hosts_dir),), _fs_lister, _fs_reader, VERSION)


def _heads(reg: lab.DistRegistry, mark: int) -> list[int]:
    return [int(m.group(1)) for m in HEAD.finditer(reg.log_text()[mark:])]


def _simulate(lab_: CtdLab, endpoints) -> tuple[list[str], bool]:
    """Which lab registries answer at the HTTP level, in order, and whether the pull succeeds: containerd
    tries each endpoint in turn and goes on after an error or a 404."""
    by_host = {r.hostport: (name, r) for name, r in lab_.regs.items()}
    contacted: list[str] = []
    for ep in endpoints:
        name, reg = by_host.get(ep.host, (None, None))
        if reg is None:
            continue
        tls = bool(reg.tls)
        if (ep.scheme == "https") != tls:
            continue  # HTTPS to a plain server (or HTTP to a TLS one): no request reaches its log
        if tls and not (ep.tls.skip_verify or str(lab_.ca) in ep.tls.ca_files or any(
                Path(c).read_bytes() == lab_.ca.read_bytes() for c in ep.tls.ca_files if Path(c).exists())):
            continue  # x509: unknown authority
        contacted.append(name)
        if name != "empty":
            return contacted, True
    return contacted, False


def _case_files(lab_: CtdLab, case: str) -> tuple[dict[str, str | bytes], str]:
    P, T, E, M = (lab_.hp(n) for n in ("plain", "tls", "empty", "m2"))
    ph, pp = P.split(":")
    http_host = '[host."http://{0}"]\n  capabilities = ["pull", "resolve"]\n'
    return {
        "no hosts dir": ({}, P),
        "server http only (DOCS_DIFFER)": ({f"{P}/hosts.toml": f'server = "http://{P}"\n'}, P),
        "[host] http": ({f"{P}/hosts.toml": f'server = "http://{P}"\n' + http_host.format(P)}, P),
        "dir host_port_": ({f"{ph}_{pp}_/hosts.toml": http_host.format(P)}, P),
        "dir _default": ({"_default/hosts.toml": http_host.format(P)}, P),
        "dir without port": ({f"{ph}/hosts.toml": http_host.format(P)}, P),
        "[host] ca": ({f"{T}/hosts.toml": f'server = "https://{T}"\n[host."https://{T}"]\n  ca = "{lab_.ca}"\n'}, T),
        "root ca (DOCS_DIFFER)": ({f"{T}/hosts.toml": f'server = "https://{T}"\nca = "{lab_.ca}"\n'}, T),
        "[host] skip_verify": ({f"{T}/hosts.toml": f'[host."https://{T}"]\n  skip_verify = true\n'}, T),
        "root skip_verify (DOCS_DIFFER)": ({f"{T}/hosts.toml": f'server = "https://{T}"\nskip_verify = true\n'}, T),
        "server names another host (DOCS_DIFFER)": ({f"{P}/hosts.toml": f'server = "http://{M}"\n'}, P),
        "[host] without scheme": ({f"{P}/hosts.toml": f'[host."{P}"]\n  capabilities = ["pull", "resolve"]\n'}, P),
        "bare ca.crt": ({f"{T}/ca.crt": lab_.ca.read_bytes()}, T),
        "mirrors in order: empty, m2": ({f"{P}/hosts.toml": http_host.format(E) + http_host.format(M)}, P),
        "mirrors in order: m2, empty": ({f"{P}/hosts.toml": http_host.format(M) + http_host.format(E)}, P),
        "hosts.toml does not parse": ({f"{P}/hosts.toml": f'[host."http://{P}"\n'}, P),
    }[case]


CASES = ["no hosts dir", "server http only (DOCS_DIFFER)", "[host] http", "dir host_port_", "dir _default",
         "dir without port", "[host] ca", "root ca (DOCS_DIFFER)", "[host] skip_verify",
         "root skip_verify (DOCS_DIFFER)",
         "server names another host (DOCS_DIFFER)", "[host] without scheme", "bare ca.crt",
         "mirrors in order: empty, m2", "mirrors in order: m2, empty", "hosts.toml does not parse"]


@pytest.mark.parametrize("case", CASES)
def test_prediction_matches_ctr_pull(ctd_lab: CtdLab, case: str) -> None:
    hosts = ctd_lab.root / "hosts"
    shutil.rmtree(hosts, ignore_errors=True)
    hosts.mkdir()
    files, target = _case_files(ctd_lab, case)
    for rel, content in files.items():
        p = hosts / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    ref = f"{target}/lab/hello:v1"
    res = _ctr_adapter(hosts).resolve(ImageRef.parse(ref))
    predicted_contacts, predicted_ok = _simulate(ctd_lab, res.endpoints)
    marks = {n: len(r.log_text()) for n, r in ctd_lab.regs.items()}
    out = ctd_lab.ctd.pull(ref, hosts)
    ok = out.returncode == 0
    assert ok == predicted_ok, (case, res, out.stderr[-800:])
    seen = [n for n in ("empty", "m2", "plain", "tls") if _heads(ctd_lab.regs[n], marks[n])]
    assert sorted(seen) == sorted(predicted_contacts), (case, seen, predicted_contacts, res.endpoints)
    if not ok:
        # the endpoint it failed on is the one predicted last, with the predicted scheme
        last = res.endpoints[-1]
        assert f'"{last.scheme}://{last.host}/v2/lab/hello/manifests/v1"' in out.stderr.replace("Head ", ""), \
            (last, out.stderr[-500:])
    if case == "hosts.toml does not parse":
        assert "failed to decode hosts.toml" in out.stderr and str(hosts) not in out.stderr.split(
            "failed to decode hosts.toml")[1].splitlines()[0], out.stderr  # the path is not named (#10144)
        assert any("does not parse" in n for n in res.notes)
    if "m2, empty" in case:
        assert not _heads(ctd_lab.regs["empty"], marks["empty"]), "the second mirror must not be asked"
    if "mirrors" in case:
        assert "?ns=" in ctd_lab.regs["m2"].log_text()[marks["m2"]:], "mirror requests carry ?ns=<registry>"


@pytest.mark.parametrize("extra,refused", [
    ('  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n    endpoint = ["https://m.example"]\n',
     True),
    ('  [plugins."io.containerd.grpc.v1.cri".registry.configs."r.example:5000".tls]\n    insecure_skip_verify = true\n',
     True),
    ('  [plugins."io.containerd.grpc.v1.cri".registry.configs."r.example:5000".auth]\n    username = "u"\n', False),
    ('  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]\n'
     '  [plugins."io.containerd.grpc.v1.cri".registry.configs]\n',
     False),
], ids=["mirrors", "configs.tls", "configs.auth", "empty tables"])
def test_cri_refuses_legacy_tables_with_config_path(lab_root: Path, labnet: lab.LabNet, extra: str,
                                                    refused: bool) -> None:
    """DD603's prediction (cri_refusal) against containerd's own decision to load its CRI plugin."""
    d = lab_root / f"cri-{abs(hash(extra)) % 10**8}"
    c = Containerd(d, netns=labnet.cli_ns, config_path=str(d / "certs.d"), extra_toml=extra).start()
    try:
        predicted = cri_refusal(parse_containerd_config(c.config.read_text(), str(c.config)), VERSION)
        assert c.wait_log("failed to load plugin io.containerd.grpc.v1.cri" if refused else "Start cri plugin",
                          10), c.log_text()[-1500:]
        log = c.log_text()
        assert (predicted is not None) == refused
        if refused:
            line = next(ln for ln in log.splitlines() if "failed to load plugin io.containerd.grpc.v1.cri" in ln)
            assert predicted in line, (predicted, line)
        else:
            assert "failed to load plugin io.containerd.grpc.v1.cri" not in log
    finally:
        c.stop()


def test_fix_apply_writes_hosts_toml_and_the_pull_works_without_restart(ctd_lab: CtdLab, tmp_path: Path) -> None:
    """DD604 on the real lab containerd: its config_path directory has nothing for the plain-HTTP registry;
    `fix --apply`'s transaction writes the hosts.toml, and the next pull succeeds with the same PID."""
    from dockerdoctor.engine import run_rules
    from dockerdoctor.facts import CheckOptions, Facts, HostPort
    from dockerdoctor.fixes.apply import ApplyOptions, apply_prepared, choose_fixes, prepare
    from dockerdoctor.fixes.backup import BackupStore
    from dockerdoctor.sources.live import LiveSource

    certs_d = ctd_lab.root / "certs.d"
    shutil.rmtree(certs_d, ignore_errors=True)
    certs_d.mkdir()
    ref = f"{ctd_lab.hp('plain')}/lab/hello:v1"
    before = ctd_lab.ctd.pull(ref, certs_d)
    assert before.returncode != 0 and "server gave HTTP response to HTTPS client" in before.stderr
    pid = ctd_lab.ctd.pid
    opts = CheckOptions(registries=[HostPort.parse(ctd_lab.hp("plain"))], containerd_config=str(ctd_lab.ctd.config))

    def facts() -> Facts:
        return Facts(LiveSource(), opts)

    f = facts()
    results = run_rules(f, {"DD604"})
    found = [x for r in results for x in r.findings]
    assert [x.rule_id for x in found] == ["DD604"], [(r.rule_id, r.status, r.reason) for r in results]
    assert found[0].params["plain_http"] is True
    choices = choose_fixes(found)
    prepared = prepare(choices, f)
    assert prepared.action is None, prepared.reasons
    assert any("no restart" in r for r in prepared.reasons), prepared.reasons
    res = apply_prepared(prepared, f, ApplyOptions(BackupStore(tmp_path / "state"), facts_factory=facts,
                                                   verify_timeout=5))
    assert res.status == "applied", res.log
    written = certs_d / ctd_lab.hp("plain") / "hosts.toml"
    assert f'[host."http://{ctd_lab.hp("plain")}"]' in written.read_text()
    after = ctd_lab.ctd.pull(ref, certs_d)
    assert after.returncode == 0, after.stderr[-500:]
    assert ctd_lab.ctd.pid == pid and ctd_lab.ctd.proc.poll() is None  # no restart


def test_dd604_unknown_ca_then_the_ca_in_hosts_toml(ctd_lab: CtdLab) -> None:
    """DD604 sees the TLS registry's unknown CA from containerd's namespace; the recipe's hosts.toml with the CA
    (the preferred fix, after its `install ca.crt` step) silences it, and the real pull then works."""
    from dockerdoctor.engine import run_rules
    from dockerdoctor.facts import CheckOptions, Facts, HostPort
    from dockerdoctor.model import ReplaceFileContent
    from dockerdoctor.sources.live import LiveSource

    certs_d = ctd_lab.root / "certs.d"
    shutil.rmtree(certs_d, ignore_errors=True)
    certs_d.mkdir()
    T = ctd_lab.hp("tls")
    opts = CheckOptions(registries=[HostPort.parse(T)], containerd_config=str(ctd_lab.ctd.config))
    found = [x for r in run_rules(Facts(LiveSource(), opts), {"DD604"}) for x in r.findings]
    assert [(x.rule_id, x.params["plain_http"]) for x in found] == [("DD604", False)], found
    fix = found[0].fix
    assert "ca" in fix.summary.lower() and fix.alternatives and "skip_verify" in fix.alternatives[0].summary
    assert ctd_lab.ctd.pull(f"{T}/lab/hello:v1", certs_d).returncode != 0
    (certs_d / T).mkdir()
    shutil.copy(ctd_lab.ca, certs_d / T / "ca.crt")  # what the fix's `install -D ... ca.crt` step does
    for op in fix.operations:
        if isinstance(op, ReplaceFileContent):
            Path(op.path).parent.mkdir(parents=True, exist_ok=True)
            Path(op.path).write_text(op.content)
    assert [x for r in run_rules(Facts(LiveSource(), opts), {"DD604"}) for x in r.findings] == []
    out = ctd_lab.ctd.pull(f"{T}/lab/hello:v1", certs_d)
    assert out.returncode == 0, out.stderr[-500:]


def test_config_toml_that_does_not_parse_same_line_as_containerd(tmp_path: Path) -> None:
    """containerd refuses a config.toml that does not parse, naming the file and line; DD601's parser names
    the same line. (containerd exits before it opens any socket.)"""
    import subprocess

    cfg = tmp_path / "config.toml"
    cfg.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry\n  config_path = "/x"\n')
    r = subprocess.run(["containerd", "--config", str(cfg)], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    m = re.search(r"failed to load TOML: (\S+): \((\d+), (\d+)\)", r.stderr)
    assert m and m.group(1) == str(cfg), r.stderr
    parsed = parse_containerd_config(cfg.read_text(), str(cfg))
    assert parsed.error and parsed.error_line == int(m.group(2))


def test_an_imported_cri_table_replaces_config_path(lab_root: Path, labnet: lab.LabNet) -> None:
    """containerd 1.6.20 merges `imports` per plugin: a conf.d file with a CRI table (here only legacy mirrors)
    replaces config.toml's CRI table whole, so config_path is gone and the CRI loads with the mirrors, as
    merge_imports predicts (DD601 warns about the dropped config_path, naming the imported file)."""
    from dockerdoctor.runtimes.containerd_config import merge_imports

    d = lab_root / "cri-imports"
    conf_d = d / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "20-mirror.toml").write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://m.example"]\n')
    c = Containerd(d, netns=labnet.cli_ns, config_path=str(d / "certs.d"), imports=(str(conf_d / "*.toml"),))
    c.start()
    try:
        cfg = merge_imports(parse_containerd_config(c.config.read_text(), str(c.config)), _fs_lister, _fs_reader)
        assert cri_refusal(cfg, VERSION) is None and cfg.config_path == ()
        assert any("dropped" in p.text and p.path == str(conf_d / "20-mirror.toml") for p in cfg.problems)
        assert c.wait_log("Start cri plugin", 10), c.log_text()[-1500:]
        log = c.log_text()
        assert "failed to load plugin io.containerd.grpc.v1.cri" not in log
        assert "Registry:{ConfigPath: Mirrors:map[docker.io:{Endpoints:[https://m.example]}]" in log
    finally:
        c.stop()
