"""Hostile snapshots made from the fixtures: each case is a copy of a fixture host with one file made
adversarial (sizes just under the read limits). Used by tests/test_hostile.py and the fuzz test."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
MB = 1024 * 1024


def copy_host(name: str, dest: Path) -> Path:
    shutil.copytree(HOSTS / name, dest, symlinks=True)
    (dest / "expected.json").unlink(missing_ok=True)
    return dest


def _write(root: Path, rel: str, data: str | bytes, append: bool = False) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(p, "ab" if append else "wb") as fh:
        fh.write(data)


def iptables_dport_line(d: Path) -> Path:
    root = copy_host("centos7-docker-distribution-iptables-rejects-5000", d)
    _write(root, "sos_commands/firewall_tables/iptables-save",
           "*nat\n:DOCKER - [0:0]\n" + "-A DOCKER --dport 1 " * (4 * MB // 20) + "\nCOMMIT\n")
    return root


def nft_dport_line(d: Path) -> Path:
    root = copy_host("debian12-docker-registry-nftables-drops-5000", d)
    _write(root, "sos_commands/firewall_tables/nft_list_ruleset",
           "table ip nat {\n chain DOCKER {\n  " + "dport 1 " * (4 * MB // 8) + "\n }\n}\n", append=True)
    return root


def nft_hook_spaces(d: Path) -> Path:
    root = copy_host("debian12-docker-registry-nftables-drops-5000", d)
    _write(root, "sos_commands/firewall_tables/nft_list_ruleset",
           "table inet filter {\n chain input {\n  type filter hook input priority 0" + " " * 400_000 + "x\n"
           + "  hook" + " " * 400_000 + "x\n }\n}\n", append=True)
    return root


def unit_continuations(d: Path) -> Path:
    root = copy_host("docker-ce-http-registry-not-trusted", d)
    _write(root, "lib/systemd/system/docker.service",
           "[Service]\nExecStart=/usr/bin/dockerd" + " \\\n" * 1_300_000 + "\n")
    return root


def unit_env_value(d: Path) -> Path:
    root = copy_host("docker-ce-http-registry-not-trusted", d)
    _write(root, "etc/systemd/system/docker.service.d/env.conf",
           '[Service]\nEnvironment="A=' + "x '" * (MB // 3) + '"\n')
    return root


def long_symlink(d: Path) -> Path:
    root = copy_host("docker-ce-http-registry-not-trusted", d)
    (root / "etc/docker/certs.d").mkdir(parents=True, exist_ok=True)
    for rel in ("etc/docker/certs.d/x", "etc/sysconfig/docker", "etc/hostname"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() or p.is_symlink():
            p.unlink()
        os.symlink("a" * 300, p)
    return root


def deep_json(d: Path) -> Path:
    root = copy_host("docker-ce-registry2-port-5000-taken", d)
    deep = "[" * 100_000 + "]" * 100_000
    _write(root, "etc/docker/daemon.json", deep)
    _write(root, "sos_commands/docker/containers/docker_inspect_registry", deep)
    _write(root, "sos_commands/nftables/nft_-j_list_ruleset", '{"nftables": ' + deep + "}")
    return root


def inspect_wrong_types(d: Path) -> Path:
    root = copy_host("docker-ce-registry2-port-5000-taken", d)
    p = root / "sos_commands/docker/containers/docker_inspect_registry"
    data = json.loads(p.read_text())

    def scramble(x, depth=0):  # every leaf becomes a value of another type
        if isinstance(x, dict):
            return {k: scramble(v, depth + 1) for k, v in x.items()}
        if isinstance(x, list):
            return [scramble(v, depth + 1) for v in x]
        if isinstance(x, str):
            return [x]
        if isinstance(x, bool):
            return "true"
        if isinstance(x, (int, float)):
            return {"n": x}
        return 7
    _write(root, "sos_commands/docker/containers/docker_inspect_registry", json.dumps(scramble(data)))
    return root


def unicode_digit_ss(d: Path) -> Path:
    root = copy_host("debian12-docker-registry-nftables-drops-5000", d)
    _write(root, "sos_commands/networking/ss_-peaonmi",
           '\ntcp LISTEN 0 128 0.0.0.0:\u00b2 0.0.0.0:* users:(("registry",pid=812,fd=3))\n', append=True)
    return root


def escapes(d: Path) -> Path:
    root = copy_host("docker-ce-daemon-json-singular-insecure-registry-key", d)
    _write(root, "etc/docker/daemon.json",
           '{"insecure-registry": ["10.0.0.5:5000\u001b]0;PWNED\u0007\u001b[31mRED\u001b[2K\u0001\u0000\u009b"],'
           ' "x\u001b[2J": "\u0001"}\n')
    return root


CASES: dict[str, Callable[[Path], Path]] = {
    "iptables-dport-line": iptables_dport_line,
    "nft-dport-line": nft_dport_line,
    "nft-hook-spaces": nft_hook_spaces,
    "unit-continuations": unit_continuations,
    "unit-env-value": unit_env_value,
    "long-symlink": long_symlink,
    "deep-json": deep_json,
    "inspect-wrong-types": inspect_wrong_types,
    "unicode-digit-ss": unicode_digit_ss,
    "escapes": escapes,
}
