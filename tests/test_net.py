"""dockerdoctor/net.py, the ground floor's address values: one HOST:PORT parser, the address of a listener."""

from __future__ import annotations

import pytest

from dockerdoctor.net import HostPort, ip_of, is_ip, split_host_port


@pytest.mark.parametrize("addr,ip", [
    ("0.0.0.0:5000", "0.0.0.0"), ("[::1]:5000", "::1"), (":5000", ""), ("5000", ""), ("", ""),
    ("registry.local:443", "registry.local"), ("[fe80::1]:5000", "fe80::1"),
])
def test_ip_of_a_listen_address(addr: str, ip: str) -> None:
    assert ip_of(addr) == ip


@pytest.mark.parametrize("text,parts", [
    ("10.0.0.5:5000", ("10.0.0.5", "5000")), ("[fd00::1]:5000", ("fd00::1", "5000")),
    ("fd00::1", ("fd00::1", "")), ("host", ("host", "")), ("[fd00::1]", ("fd00::1", "")),
])
def test_split_host_port(text: str, parts: tuple[str, str]) -> None:
    assert split_host_port(text) == parts


def test_host_port_round_trips_and_refuses_bad_ports() -> None:
    assert str(HostPort.parse("https://[FD00::1]:5000/v2/")) == "[fd00::1]:5000"
    assert HostPort.parse("Reg.Local") == HostPort("reg.local", None)
    for bad in ("x:0", "x:65536", "x:5o00", ":5000"):
        with pytest.raises(ValueError):
            HostPort.parse(bad)
    assert is_ip("[::1]") and is_ip("10.0.0.5") and not is_ip("reg.local")
