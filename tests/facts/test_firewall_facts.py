"""Firewall facts: firewall-cmd output, zone XML, nft (text and JSON), iptables, ufw, ip addr."""

from __future__ import annotations

import json
from pathlib import Path

from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.firewall import (
    FwZone,
    docker_dnat_ports,
    parse_ip_addr,
    parse_iptables_list,
    parse_iptables_save,
    parse_list_all_zones,
    parse_nft_json,
    parse_nft_text,
    parse_ufw_status,
    parse_zone_xml,
    zone_allows,
)
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
SERVICES = {"docker-registry": [("5000", "tcp")], "ssh": [("22", "tcp")]}


def test_list_all_zones_from_real_firewalld_capture() -> None:
    d = HOSTS / "debian12-docker-registry-firewalld-port-runtime-only/sos_commands/firewalld"
    rt = parse_list_all_zones((d / "firewall-cmd_--list-all-zones").read_text(), "rt")
    pm = parse_list_all_zones((d / "firewall-cmd_--permanent_--list-all-zones").read_text(), "pm")
    assert {"public", "trusted", "drop", "block"} <= set(rt)
    assert rt["public"].active and ("5000", "tcp") in rt["public"].ports
    assert zone_allows(rt["public"], 5000, "tcp", SERVICES).open is True
    assert zone_allows(pm["public"], 5000, "tcp", SERVICES).open is False
    assert zone_allows(rt["trusted"], 5000, "tcp", SERVICES).open is True  # target ACCEPT


def test_zone_allows_services_ranges_and_rich_rules() -> None:
    z = FwZone("public", services=["docker-registry"])
    assert "service docker-registry" in zone_allows(z, 5000, "tcp", SERVICES).how
    z = FwZone("public", ports=[("5000-5010", "tcp")])
    assert zone_allows(z, 5005, "tcp", {}).open and not zone_allows(z, 5005, "udp", {}).open
    z = FwZone("public", rich_rules=['rule family="ipv4" source address="10.0.0.0/8" port port="5000" '
                                     'protocol="tcp" accept'])
    v = zone_allows(z, 5000, "tcp", {})
    assert v.open and "some sources" in v.how
    z = FwZone("public", rich_rules=['rule family="ipv4" port port="5000" protocol="tcp" reject'])
    assert zone_allows(z, 5000, "tcp", {}).open is False


def test_zone_xml() -> None:
    xml = """<?xml version="1.0" encoding="utf-8"?>
<zone target="DROP"><short>Public</short><service name="ssh"/><port port="5000" protocol="tcp"/>
<interface name="eth0"/><rule family="ipv4"><source address="10.1.0.0/16"/><port port="6000" protocol="tcp"/>
<accept/></rule></zone>"""
    z = parse_zone_xml(xml, "public", "x")
    assert z is not None and z.target == "DROP" and z.interfaces == ["eth0"]
    assert zone_allows(z, 5000, "tcp", {}).open and zone_allows(z, 6000, "tcp", {}).open
    assert parse_zone_xml("<zone", "x", "x") is None


def test_nft_text_policy_drop_fixture() -> None:
    text = (HOSTS / "debian12-docker-registry-nftables-drops-5000/sos_commands/firewall_tables/nft_list_ruleset")
    rules, docker, fwd = parse_nft_text(text.read_text(), "nft")
    accepts = [r for r in rules if r.verdict == "accept" and not r.source_limited]
    assert {p for r in accepts for p in r.ports} == {(22, 22), (80, 80), (443, 443)}
    assert rules[-1].is_policy and rules[-1].verdict == "drop"
    last_rule = [r for r in rules if not r.is_policy][-1]
    assert last_rule.verdict == "drop" and last_rule.matches(5000) and not docker and not fwd


def test_nft_json() -> None:
    data = {"nftables": [
        {"table": {"family": "inet", "name": "lab"}},
        {"chain": {"family": "inet", "table": "lab", "name": "input", "type": "filter", "hook": "input",
                   "policy": "accept"}},
        {"rule": {"family": "inet", "table": "lab", "chain": "input", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"accept": None}]}},
        {"rule": {"family": "inet", "table": "lab", "chain": "input", "handle": 4, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5000}},
            {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]}},
        {"chain": {"family": "ip", "table": "nat", "name": "DOCKER"}},
        {"rule": {"family": "ip", "table": "nat", "chain": "DOCKER", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5001}},
            {"xt": {"type": "target", "name": "DNAT"}}]}},
    ]}
    text = json.dumps(data)
    rules, docker, _ = parse_nft_json(text, "nft -j")
    (r,) = rules
    assert r.verdict == "reject" and r.handle == 4 and r.matches(5000) and "admin-prohibited" in r.reject_with
    assert docker and docker_dnat_ports(text, "nft-json") == {5001}


def test_iptables_list_fixture_and_save() -> None:
    text = (HOSTS / "centos7-docker-distribution-iptables-rejects-5000/sos_commands/firewall_tables/iptables_-vnxL")
    rules, docker = parse_iptables_list(text.read_text(), "ipt")
    decisive = [r for r in rules if not r.source_limited]
    assert decisive[-1].verdict == "reject" and decisive[-1].reject_with == "icmp-host-prohibited"
    assert decisive[-1].position == 5 and decisive[-1].matches(5000)
    assert any(r.verdict == "accept" and r.ports == ((22, 22),) for r in decisive)
    save = ("*filter\n:INPUT DROP [0:0]\n:DOCKER - [0:0]\n-A INPUT -i lo -j ACCEPT\n"
            "-A INPUT -p tcp -m tcp --dport 5000 -j REJECT --reject-with tcp-reset\nCOMMIT\n"
            "*nat\n-A DOCKER ! -i docker0 -p tcp -m tcp --dport 5001 -j DNAT --to-destination 172.17.0.2:5000\n")
    rules, docker = parse_iptables_save(save, "save")
    assert docker and rules[0].reject_with == "tcp-reset" and rules[-1].is_policy
    assert docker_dnat_ports(save, "iptables-save") == {5001}


def test_ufw_status() -> None:
    text = """Status: active

     To                         Action      From
     --                         ------      ----
[ 1] 22/tcp                     ALLOW IN    Anywhere
[ 2] 5000/tcp                   DENY IN     Anywhere
"""
    rules, active = parse_ufw_status(text, "ufw")
    assert active and rules[0].verdict == "deny" and rules[0].matches(5000)


def test_ip_addr_both_formats() -> None:
    one = "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever\n"
    multi = "2: eth0: <BROADCAST,UP> mtu 1500\n    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\n" \
            "3: docker0: <UP>\n    inet 172.17.0.1/16 scope global docker0\n"
    assert [(a.iface, a.address) for a in parse_ip_addr(one)] == [("eth0", "10.0.0.5")]
    assert [(a.iface, a.address) for a in parse_ip_addr(multi)] == [("eth0", "10.0.0.5"), ("docker0", "172.17.0.1")]


def test_firewalld_fact_from_snapshot() -> None:
    facts = Facts(SnapshotSource(HOSTS / "debian12-docker-registry-firewalld-port-closed"), CheckOptions())
    st = facts.get("firewalld")
    assert st.running and st.default_zone == "public" and st.via.startswith("firewall-cmd")
    assert st.port("public", 5000).open is False and st.port("public", 5000, permanent=True).open is False
    assert st.backend == "nftables"
    stopped = Facts(SnapshotSource(HOSTS / "centos7-registry-host-selinux-and-firewalld-off"), CheckOptions())
    assert stopped.get("firewalld").running is False


def test_old_firewalld_settings_tuple() -> None:
    from dockerdoctor.facts.firewall import _settings_from_tuple, _zone_from_settings

    t = ["", "Public", "", False, "default", ["ssh"], [["5000", "tcp"]], [], False, [], ["eth0"], [],
         ['rule family="ipv4" port port="6000" protocol="tcp" accept'], [], [], False]
    z = _zone_from_settings("public", _settings_from_tuple(t), "x")
    assert z.interfaces == ["eth0"] and z.ports == [("5000", "tcp")] and zone_allows(z, 6000, "tcp", {}).open


def test_no_system_bus_means_firewalld_cannot_run_and_firewall_cmd_is_not_asked(tmp_path: Path,
                                                                                 monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Live, with firewalld installed: no system bus socket, so no D-Bus try and none of the three
    firewall-cmd runs (a Python program each, ~0.2 s), whether or not dbus-python is installed."""
    import importlib.util

    from dockerdoctor.sources.live import LiveSource

    root = tmp_path / "root"
    (root / "etc/firewalld/zones").mkdir(parents=True)
    (root / "etc/firewalld/firewalld.conf").write_text("DefaultZone=public\n")
    (root / "etc/firewalld/zones/public.xml").write_text('<?xml version="1.0"?><zone><port port="22" protocol="tcp"/>'
                                                         "</zone>")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    ran: list[str] = []
    monkeypatch.setattr(LiveSource, "command", lambda self, key, limit=0: ran.append(key))
    real_find_spec = importlib.util.find_spec
    for has_dbus in (True, False):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, _has=has_dbus: None if name == "dbus" and not _has
                            else real_find_spec(name, *a))
        st = Facts(LiveSource(str(root)), CheckOptions(network=False)).get("firewalld")
        assert not st.running and "no system bus" in st.state_source and f"{tmp_path}/no-bus" in st.state_source
        assert st.permanent and st.permanent["public"].ports == [("22", "tcp")]
    assert [k for k in ran if k.startswith("firewall")] == []
