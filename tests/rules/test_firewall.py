"""DD301, DD302 and DD306 on the captured snapshots, and on facts built by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.firewall import FilterRule, FirewalldState, FwZone, PacketFilter
from dockerdoctor.facts.ports import RegistryListener
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
IDS = ("DD301", "DD302", "DD306")


def check(name: str, **seed) -> dict:
    facts = Facts(SnapshotSource(HOSTS / name), CheckOptions(network=False))
    facts._values.update(seed)
    out = {}
    for r in run_rules(facts, set(IDS)):
        if r.rule_id in IDS:
            assert r.status != RuleStatus.CRASHED, r.reason
            out[r.rule_id] = r.findings
    return out


@pytest.mark.parametrize("scenario,fire", [
    ("debian12-docker-registry-firewalld-port-closed", {"DD301"}),
    ("debian12-docker-registry-firewalld-port-runtime-only", {"DD301"}),
    ("debian12-docker-registry-nftables-drops-5000", {"DD302"}),
    ("centos7-docker-distribution-iptables-rejects-5000", {"DD302"}),
    ("centos7-registry-host-selinux-and-firewalld-off", {"DD306"}),
    ("centos7-registry-host-healthy", set()),
])
def test_fixture_fires_exactly(scenario: str, fire: set[str]) -> None:
    res = check(scenario)
    assert {rid for rid, fs in res.items() if fs} == fire


def test_dd301_closed_opens_one_port_in_one_zone_never_stops_firewalld() -> None:
    (f,) = check("debian12-docker-registry-firewalld-port-closed")["DD301"]
    cmds = [op.shell() for op in f.fix.operations]
    assert cmds == ["firewall-cmd --zone=public --add-port=5000/tcp",
                    "firewall-cmd --permanent --zone=public --add-port=5000/tcp"]
    (w,) = check("debian12-docker-registry-firewalld-port-runtime-only")["DD301"]
    assert w.severity.label == "warning" and [op.shell() for op in w.fix.operations] == cmds[1:]


def _fw(ports_rt, ports_pm, backend="nftables") -> FirewalldState:
    return FirewalldState(True, "test", default_zone="public",
                          runtime={"public": FwZone("public", ports=ports_rt)},
                          permanent={"public": FwZone("public", ports=ports_pm)}, backend=backend,
                          backend_source="/etc/firewalld/firewalld.conf", backend_line=7)


PUBLISHED = RegistryListener(5000, "", "published", "container registry", "x", "publishes 0.0.0.0:5000->5000/tcp",
                             "registry")


def test_dd301_published_port_is_info_unless_docker_rules_are_gone() -> None:
    pf = PacketFilter([], ["nft -j list ruleset"], docker_chains=True, docker_dnat_ports={5000})
    base = "centos7-registry-host-healthy"
    seed = dict(firewalld=_fw([], []), registry_listeners=[PUBLISHED], interface_addresses=[], packet_filter=pf)
    (f,) = check(base, **seed)["DD301"]
    assert f.severity.label == "info" and "not the cause" in f.message
    seed["packet_filter"] = PacketFilter([], ["nft"], docker_chains=True, docker_dnat_ports=set())
    (f,) = check(base, **seed)["DD301"]
    assert f.severity.label == "error" and f.fix.operations[0].shell() == "systemctl restart docker.service"
    seed["packet_filter"] = pf
    seed["firewalld"] = _fw([], [], backend="iptables")
    (f,) = check(base, **seed)["DD301"]
    assert f.severity.label == "warning" and "iptables backend" in f.title


def test_dd301_permanent_but_not_applied() -> None:
    host = RegistryListener(5000, "", "host", "process registry (pid 1)", "x", "listens", None, 1)
    (f,) = check("centos7-registry-host-healthy", firewalld=_fw([], [("5000", "tcp")]),
                 registry_listeners=[host], interface_addresses=[])["DD301"]
    assert f.severity.label == "error" and [op.shell() for op in f.fix.operations] == [
        "firewall-cmd --zone=public --add-port=5000/tcp"]


def test_dd302_ignores_firewalld_own_table_and_source_limited_rules() -> None:
    host = RegistryListener(5000, "", "host", "process registry (pid 1)", "x", "listens", None, 1)
    rules = [
        FilterRule("nftables", "filter_INPUT", "fw", "reject", "icmpx admin-prohibited", (), None, False,
                   family="inet", table="firewalld"),
        FilterRule("nftables", "input", "lab", "drop", "", ((5000, 5000),), "tcp", True, family="inet", table="lab"),
    ]
    res = check("centos7-registry-host-healthy", packet_filter=PacketFilter(rules, ["nft"]),
                registry_listeners=[host], firewalld=_fw([("5000", "tcp")], [("5000", "tcp")]))
    assert res["DD302"] == []


def test_dd302_drop_vs_reset_wording() -> None:
    host = RegistryListener(5000, "", "host", "process registry (pid 1)", "x", "listens", None, 1)
    for rule, words in [
        (FilterRule("iptables", "INPUT", "r", "reject", "tcp-reset", ((5000, 5000),), "tcp", False, position=3),
         "connection refused"),
        (FilterRule("iptables", "INPUT", "r", "drop", "", ((5000, 5000),), "tcp", False, position=3), "time out"),
    ]:
        (f,) = check("centos7-registry-host-healthy", packet_filter=PacketFilter([rule], ["ipt"]),
                     registry_listeners=[host])["DD302"]
        assert words in f.message
        assert f.fix.operations[0].shell() == "iptables -I INPUT 3 -p tcp --dport 5000 -j ACCEPT"


def test_dd301_runtime_unknown_permanent_closed() -> None:
    host = RegistryListener(5000, "", "host", "process registry (pid 1)", "x", "listens", None, 1)
    fw = _fw([], [])
    fw.runtime = None
    (f,) = check("centos7-registry-host-healthy", firewalld=fw, registry_listeners=[host],
                 interface_addresses=[])["DD301"]
    assert f.severity.label == "error" and "permanent configuration" in f.title


def test_dd306_names_only_ports_other_hosts_reach() -> None:
    off = FirewalldState(False, "firewall-cmd --state: not running", default_zone="public")
    listeners = [RegistryListener(15000, "127.0.0.1", "host", "process registry (pid 1)", "x", "listens", None, 1),
                 RegistryListener(5218, "", "host", "process registry (pid 2)", "x", "listens", None, 2,
                                  running=False),
                 RegistryListener(5000, "", "host", "process registry (pid 3)", "x", "listens", None, 3),
                 RegistryListener(5001, "10.0.0.5", "host", "process registry (pid 4)", "x", "listens", None, 4)]
    facts = Facts.from_values({"firewalld": off, "registry_listeners": listeners})
    (f,) = [f for r in run_rules(facts, {"DD306"}) for f in r.findings]
    assert "registry's ports (5000, 5001/tcp) in zone public" in f.message
    assert "15000" not in f.message and "5218" not in f.message and "back on" not in f.message
    only_loopback = Facts.from_values({"firewalld": off, "registry_listeners": listeners[:1]})
    (g,) = [f for r in run_rules(only_loopback, {"DD306"}) for f in r.findings]
    assert "15000" not in g.message + g.fix.summary and not g.fix.operations
