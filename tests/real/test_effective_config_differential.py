"""Differential: the effective-config fact against what a real dockerd 20.10 reports in /info,
and DD104/DD105/DD106 against a real dockerd that refuses to start.

Each case starts a real dockerd in the lab's client namespace with a private /etc/docker, lets
dockerdoctor compute the configuration from the process's command line and daemon.json (read
through /proc/PID/root, as the daemon sees it), and compares it with GET /info.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.daemon import predict_registry_config
from dockerdoctor.sources.live import LiveSource
from dockerdoctor.sources.snapshot import SnapshotSource

pytestmark = pytest.mark.real


def _info_sets(info: dict) -> tuple[set[str], set[str]]:
    reg = info["RegistryConfig"]
    cidrs = set(reg.get("InsecureRegistryCIDRs") or []) - {"127.0.0.0/8"}
    names = {k for k, v in (reg.get("IndexConfigs") or {}).items() if not v.get("Secure", True)}
    return cidrs, names


CASES = {
    "flag": ({}, ["--insecure-registry=SRV:5100"]),
    "flag-space-form-and-repeat": ({}, ["--insecure-registry", "SRV:5100", "--insecure-registry=10.9.9.9:443"]),
    "file-list-with-cidr": ({"insecure-registries": ["SRV:5100", "10.77.0.0/16"]}, []),
    "scheme-is-stripped": ({}, ["--insecure-registry=http://SRV:5100"]),
    "host-without-port": ({"insecure-registries": ["SRV"]}, []),
    "singular-key-is-ignored": ({"insecure-registry": ["SRV:5100"]}, []),
    "file-and-other-flags": ({"insecure-registries": ["SRV:5101"], "debug": True}, ["--log-level=warn"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_effective_config_matches_info(case: str, client_dockerd, labnet) -> None:
    dj, flags = CASES[case]
    dj = json.loads(json.dumps(dj).replace("SRV", labnet.srv_ip))
    flags = [f.replace("SRV", labnet.srv_ip) for f in flags]
    d = client_dockerd(daemon_json=dj, extra_args=flags)
    facts = Facts(LiveSource(), CheckOptions(docker_host=d.host, network=False))
    proc = facts.get("dockerd_process")
    assert proc is not None and proc.pid == d.pid
    cfg = facts.get("effective_config")
    predicted = predict_registry_config([v.value for v in cfg.insecure_planned])
    assert predicted == _info_sets(d.info()), (cfg.insecure_planned, d.info()["RegistryConfig"])
    # the fact that reads /info agrees as well
    running = facts.get("docker_info")
    assert set(running.insecure_names) == predicted[1]


def test_config_file_flag_is_followed(client_dockerd, labnet, tmp_path: Path) -> None:
    cf = tmp_path / "custom.json"
    cf.write_text(json.dumps({"insecure-registries": [f"{labnet.srv_ip}:5100"]}))
    d = client_dockerd(daemon_json={"insecure-registries": ["10.1.1.1:1"]}, config_file=cf)
    facts = Facts(LiveSource(), CheckOptions(docker_host=d.host, network=False))
    cfg = facts.get("effective_config")
    assert cfg.daemon_json.path == str(cf) and cfg.daemon_json.via == "--config-file flag"
    assert predict_registry_config([v.value for v in cfg.insecure_planned]) == _info_sets(d.info())


REFUSALS = {
    # name: (daemon.json text, flags, rule that must fire, text dockerd must print)
    "conflict": (
        '{"insecure-registries": ["SRV:5100"]}',
        ["--insecure-registry=SRV:5100"],
        "DD104",
        "specified both as a flag and in the configuration file",
    ),
    "trailing-comma": (
        '{\n  "insecure-registries": ["SRV:5100"],\n}\n',
        [],
        "DD106",
        "invalid character '}' looking for beginning of object key string",
    ),
    "string-not-list": ('{"insecure-registries": "SRV:5100"}', [], "DD106", "cannot unmarshal string"),
    "typo-key": (
        '{"insecure-registires": ["SRV:5100"]}',
        [],
        "DD106",
        "the following directives don't match any configuration option: insecure-registires",
    ),
    "bracket-list": ("{}", ["--insecure-registry=[SRV:5100,10.9.9.9:5100]"], "DD105", "invalid host"),
    "comma-list": ("{}", ["--insecure-registry=SRV:5100,10.9.9.9:5100"], "DD105", "invalid host"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_predicted(case: str, client_dockerd, labnet, tmp_path: Path) -> None:
    text, flags, rule_id, message = REFUSALS[case]
    text = text.replace("SRV", labnet.srv_ip)
    flags = [f.replace("SRV", labnet.srv_ip) for f in flags]
    d = client_dockerd(daemon_json=text, extra_args=flags, must_start=False)
    assert not d.running(), "dockerd started, but dockerdoctor predicts it refuses"
    assert message in d.failure_line(), d.failure_line()
    # The same inputs as a snapshot: what the process table and /etc/docker would show.
    snap = tmp_path / "snap"
    (snap / "etc/docker").mkdir(parents=True)
    (snap / "etc/docker/daemon.json").write_text(text)
    ps = snap / "sos_commands/process/ps_auxwww"
    ps.parent.mkdir(parents=True)
    ps.write_text(
        "USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND\n"
        f"root 4242 0.0 0.1 1 1 ? Ssl 10:00 0:00 {shlex.join(['/usr/sbin/dockerd', *flags])}\n"
    )
    source = SnapshotSource(snap)
    results = run_rules(Facts(source, CheckOptions(network=False)))
    fired = {f.rule_id for r in results for f in r.findings}
    assert rule_id in fired, (fired, [(r.rule_id, r.reason) for r in results])
