"""DD101–DD110 and DD501 on small hand-built snapshots: each rule's edge cases and its fix data."""

from __future__ import annotations

from pathlib import Path

from snap import PS_HEADER, docker_ce_host, make_snapshot, ps_line

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.fixes.apply import Choice, prepare
from dockerdoctor.fixes.plan import plan_of
from dockerdoctor.model import EnvFileSet, JsonListAdd, JsonRenameKey, RuleStatus, ServiceAction, Severity
from dockerdoctor.sources.snapshot import SnapshotSource

REG = HostPort("10.0.0.5", 5000)
CENTOS_UNIT = """[Service]
EnvironmentFile=-/etc/sysconfig/docker
ExecStart=/usr/bin/dockerd-current $OPTIONS \\
          $INSECURE_REGISTRY
"""


def check(root: Path, select: set[str], registries: list[HostPort] | None = None):  # type: ignore[no-untyped-def]
    src = SnapshotSource(root)
    try:
        facts = Facts(src, CheckOptions(registries=registries if registries is not None else [REG], network=False))
        results = {r.rule_id: r for r in run_rules(facts, select=select)}
        return results, facts
    finally:
        src.close()


def findings(root: Path, rid: str, **kw):  # type: ignore[no-untyped-def]
    results, _ = check(root, {rid}, **kw)
    r = results[rid]
    assert r.status != RuleStatus.CRASHED, r.reason
    return r.findings


def test_dd101_plain_http_from_the_journal_prefers_tls_and_names_the_alternative(tmp_path: Path) -> None:
    journal = ('Mar 04 09:41:52 h dockerd[1]: level=error msg="Handler for POST /v1.41/images/create returned '
               'error: Get \\"https://10.0.0.5:5000/v2/\\": http: server gave HTTP response to HTTPS client"\n')
    root = docker_ce_host(tmp_path / "h", daemon_json="{}\n", insecure_running=(),
                          extra={"sos_commands/docker/journalctl_--no-pager_--unit_docker": journal})
    (f,) = findings(root, "DD101")
    assert f.params["plain_http"] is True and f.fix is not None
    assert "certs.d/10.0.0.5:5000/ca.crt" in f.fix.summary
    alt = f.fix.alternatives[0]
    assert alt.operations[0] == JsonListAdd("/etc/docker/daemon.json", "insecure-registries", "10.0.0.5:5000")
    assert alt.operations[-1] == ServiceAction("reload")
    assert any("CIS" in w for w in alt.warnings)


def test_dd101_silent_when_a_cidr_covers_the_registry(tmp_path: Path) -> None:
    journal = 'x dockerd[1]: Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client\n'
    root = docker_ce_host(tmp_path / "h", daemon_json='{"insecure-registries": ["10.0.0.0/24"]}',
                          insecure_running=("10.0.0.0/24",),
                          extra={"sos_commands/docker/journalctl_--no-pager_--unit_docker": journal})
    assert findings(root, "DD101") == []


def test_dd101_adds_next_to_existing_flags_never_into_a_new_place(tmp_path: Path) -> None:
    """Where the daemon already takes insecure registries as flags, the entry goes there (a daemon.json
    key would make dockerd refuse to start, DD104)."""
    journal = 'x dockerd[1]: Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client\n'
    root = make_snapshot(tmp_path / "h", {
        "usr/lib/systemd/system/docker.service": CENTOS_UNIT,
        "etc/sysconfig/docker": "OPTIONS='--selinux-enabled'\nINSECURE_REGISTRY='--insecure-registry 10.0.0.9:5000'\n",
        "sos_commands/docker/journalctl_--no-pager_--unit_docker": journal,
    })
    (f,) = findings(root, "DD101")
    ops = f.fix.alternatives[0].operations
    assert ops[0] == EnvFileSet("/etc/sysconfig/docker", "INSECURE_REGISTRY", "--insecure-registry=10.0.0.5:5000",
                                append=True)
    assert ops[1] == ServiceAction("restart")


def test_dd103_unused_and_braced_variables(tmp_path: Path) -> None:
    sysconfig = "INSECURE_REGISTRY='--insecure-registry 10.0.0.5:5000'\n"
    unused = make_snapshot(tmp_path / "a", {
        "usr/lib/systemd/system/docker.service": "[Service]\nEnvironmentFile=-/etc/sysconfig/docker\n"
                                                 "ExecStart=/usr/bin/dockerd\n",
        "etc/sysconfig/docker": sysconfig})
    (f,) = findings(unused, "DD103")
    assert "never expands $INSECURE_REGISTRY" in f.message
    assert f.evidence[0].location() == "/etc/sysconfig/docker:1"
    braced = make_snapshot(tmp_path / "b", {
        "usr/lib/systemd/system/docker.service": "[Service]\nEnvironmentFile=-/etc/sysconfig/docker\n"
                                                 "ExecStart=/usr/bin/dockerd ${INSECURE_REGISTRY}\n",
        "etc/sysconfig/docker": sysconfig})
    (g,) = findings(braced, "DD103")
    assert "one word" in g.title and "unknown flag" in g.message
    assert "ExecStart=/usr/bin/dockerd $INSECURE_REGISTRY" in g.fix.operations[0].content


def test_dd104_names_both_places(tmp_path: Path) -> None:
    root = make_snapshot(tmp_path / "h", {
        "lib/systemd/system/docker.service": "[Service]\nEnvironmentFile=-/etc/default/docker\n"
                                             "ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS\n",
        "lib/systemd/system/docker.socket": "[Socket]\nListenStream=/run/docker.sock\n",
        "etc/default/docker": 'DOCKER_OPTS="--insecure-registry 10.0.0.5:5000"\n',
        "etc/docker/daemon.json": '{\n  "insecure-registries": ["10.0.0.5:5000"]\n}\n'})
    (f,) = findings(root, "DD104")
    assert f.params == {"key": "insecure-registries", "flag": "insecure-registry"}
    assert {e.location() for e in f.evidence} == {"/etc/default/docker:1", "/etc/docker/daemon.json:2"}
    assert EnvFileSet("/etc/default/docker", "DOCKER_OPTS", "") in f.fix.operations


def test_dd105_bracket_list_no_port_and_scheme(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h", daemon_json='{"insecure-registries": '
                          '["[10.0.0.5:5000,10.0.0.6:5000]", "10.0.0.5", "http://10.0.0.7:5000"]}')
    got = {f.params["value"]: f for f in findings(root, "DD105")}
    assert got["[10.0.0.5:5000,10.0.0.6:5000]"].severity == Severity.ERROR
    assert got["10.0.0.5"].severity == Severity.ERROR  # the named registry 10.0.0.5:5000 still fails
    assert got["http://10.0.0.7:5000"].severity == Severity.INFO
    fix_ops = got["[10.0.0.5:5000,10.0.0.6:5000]"].fix.operations
    assert fix_ops[0].value == ["10.0.0.5", "http://10.0.0.7:5000", "10.0.0.5:5000", "10.0.0.6:5000"]


def test_dd106_singular_key_typo_and_wrong_type(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h", daemon_json='{\n  "insecure-registry": ["10.0.0.5:5000"],\n'
                          '  "insecure-registires": [],\n  "debug": "yes"\n}\n')
    got = {f.params["key"]: f for f in findings(root, "DD106")}
    assert got["insecure-registry"].fix.operations[0] == JsonRenameKey(
        "/etc/docker/daemon.json", "insecure-registry", "insecure-registries")
    assert "Did you mean \"insecure-registries\"" in got["insecure-registires"].message
    assert "wrong type" in got["debug"].title
    assert got["insecure-registry"].evidence[0].line == 2


def test_dd106_broken_json_gets_a_repaired_file_in_the_plan(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h", daemon_json='{\n  "debug": true,\n  "insecure-registries": ["a:1"],\n}\n')
    (f,) = findings(root, "DD106")
    assert f.evidence[0].line == 4
    plan = plan_of(prepare([Choice(f, f.fix)], Facts(SnapshotSource(root), CheckOptions(network=False))))
    assert '-  "insecure-registries": ["a:1"],' in plan.steps[0].diffs[0]
    assert '+    "a:1"' in plan.steps[0].diffs[0]


def test_dd106_removed_key_depends_on_the_engine(tmp_path: Path) -> None:
    old = docker_ce_host(tmp_path / "old", daemon_json='{"graph": "/srv/docker"}')
    assert findings(old, "DD106") == []  # deprecated, but still read by 20.10
    new = docker_ce_host(tmp_path / "new", daemon_json='{"graph": "/srv/docker"}')
    info = new / "sos_commands/docker/docker_info"
    info.write_text(info.read_text().replace("20.10.24", "24.0.7"))
    (f,) = findings(new, "DD106")
    assert "removed in engine 23.0" in f.title and "data-root" in f.message


def test_dd107_defers_to_dd108_and_names_changed_files(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h", daemon_json='{"insecure-registries": ["10.0.0.5:5000"]}',
                          insecure_running=())
    (f,) = findings(root, "DD107")
    assert f.params["missing"] == ["10.0.0.5:5000"]
    assert f.fix.operations == (ServiceAction("reload"),)
    (root / "sos_commands/systemd").mkdir(parents=True)
    (root / "sos_commands/systemd/systemctl_show_service_--all").write_text(
        "Id=docker.service\nActiveState=active\nNeedDaemonReload=yes\n")
    results, _ = check(root, {"DD107", "DD108"})
    assert results["DD107"].status == RuleStatus.SKIPPED
    assert [x.rule_id for x in results["DD108"].findings] == ["DD108"]


def test_dd109_docker_daemon_fork_flags_and_fd_without_socket(tmp_path: Path) -> None:
    root = make_snapshot(tmp_path / "h", {
        "usr/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/docker daemon -H fd:// "
                                                 "--add-registry registry.access.redhat.com\n",
        "sos_commands/docker/docker_info": "Server:\n Server Version: 20.10.24\n"})
    titles = sorted(f.title for f in findings(root, "DD109"))
    assert titles == ["-H fd:// without docker.socket", "ExecStart runs `docker daemon`", "unknown flag --add-registry"]
    # Red Hat's docker 1.13 has --add-registry, and still has `docker daemon`
    info = root / "sos_commands/docker/docker_info"
    info.write_text("Server:\n Server Version: 1.13.1\n")
    assert sorted(f.title for f in findings(root, "DD109")) == ["-H fd:// without docker.socket"]


def test_dd110_no_proxy_matching(tmp_path: Path) -> None:
    dropin = '[Service]\nEnvironment="HTTPS_PROXY=http://proxy:3128" "NO_PROXY=localhost,.example.com"\n'
    root = docker_ce_host(tmp_path / "h", extra={"etc/systemd/system/docker.service.d/http-proxy.conf": dropin})
    (f,) = findings(root, "DD110")
    assert f.params == {"registry": "10.0.0.5:5000", "proxy": "http://proxy:3128"}
    assert EnvFileSet("/etc/systemd/system/docker.service.d/http-proxy.conf", "NO_PROXY",
                      "localhost,.example.com,10.0.0.5") in f.fix.operations
    assert findings(root, "DD110", registries=[HostPort("reg.example.com", 5000)]) == []


def test_dd501_quotes_the_reason_once(tmp_path: Path) -> None:
    line = ("Mar 04 08:12:43 h dockerd[{pid}]: failed to start daemon: error initializing graphdriver: "
            "driver not supported\n")
    root = make_snapshot(tmp_path / "h", {
        "usr/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd\n",
        "sos_commands/process/ps_auxwww": PS_HEADER + ps_line("/usr/sbin/sshd -D", 7),
        "sos_commands/docker/journalctl_--no-pager_--unit_docker": "".join(line.format(pid=p) for p in (1, 2, 3)),
        "sos_commands/systemd/systemctl_show_service_--all": "Id=docker.service\nActiveState=failed\n"})
    (f,) = findings(root, "DD501")
    assert f.params["reason"].startswith("failed to start daemon: error initializing graphdriver")
    assert sum("graphdriver" in e.text for e in f.evidence) == 1


def test_dd110_quotes_the_live_proxy_probe(tmp_path: Path) -> None:
    from dockerdoctor.probe.report import EndpointReport

    dropin = '[Service]\nEnvironment="HTTPS_PROXY=http://proxy:3128"\n'
    root = docker_ce_host(tmp_path / "h", extra={"etc/systemd/system/docker.service.d/http-proxy.conf": dropin})
    src = SnapshotSource(root)
    facts = Facts(src, CheckOptions(registries=[REG], network=False))
    rep = EndpointReport(REG, proxy="http://proxy:3128", proxy_result="HTTP/1.1 403 Forbidden", proxy_ok=False)
    facts._values["endpoint_probes"] = {str(REG): rep}  # what the live probe found
    (r,) = [r for r in run_rules(facts, select={"DD110"}) if r.rule_id == "DD110"]
    (f,) = r.findings
    assert any(e.text == "the proxy cannot reach it: HTTP/1.1 403 Forbidden" for e in f.evidence)


def test_dd106_names_json_types_not_python_reprs(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h", daemon_json='{"insecure-registries": [1, null, {"x": []}, "10.0.0.5:5000"],'
                          ' "registry-mirrors": "http://x", "proxies": 7}')
    results, _ = check(root, {"DD105", "DD106", "DD107"})
    got = {f.params["key"]: f for f in results["DD106"].findings}
    assert "element 1 is a number" in got["insecure-registries"].message
    assert got["insecure-registries"].fix.operations[0].value == ["10.0.0.5:5000"]
    assert "but it is a number" in got["proxies"].message and got["proxies"].fix is not None
    text = " ".join(f.title + f.message + " ".join(e.text for e in f.evidence)
                    for r in results.values() for f in r.findings)
    assert "None" not in text and "{'x'" not in text and "not list" not in text
    assert not results["DD105"].findings  # non-strings are DD106's type error, not registries


def test_dd107_ignores_the_default_ipv6_loopback_range_of_engine_28(tmp_path: Path) -> None:
    # docker 28 lists ::1/128 among its insecure ranges by itself (moby/moby#48540)
    root = docker_ce_host(tmp_path / "h", insecure_running=("10.0.0.5:5000", "::1/128"))
    info = root / "sos_commands/docker/docker_info"
    info.write_text(info.read_text().replace("20.10.24", "28.2.2"))
    assert findings(root, "DD107") == []
    stale = docker_ce_host(tmp_path / "s", insecure_running=("10.0.0.5:5000", "10.9.0.0/16"))
    (f,) = findings(stale, "DD107")
    assert "10.9.0.0/16" in f.message and "::1" not in f.message
