"""Capture real dockerd texts into ``fixtures/errors/dockerd-20.10/`` (used by tests/real/*).

A stored file is written when it is missing, or when ``DDLAB_UPDATE_FIXTURES=1``; otherwise the capture
must still equal it (timestamps, digests, ephemeral ports and the lab's temp dir are masked in the
comparison only). Stored files are verbatim except that the lab's temp dir is written ``/tmp/dd-lab-X/d``.

The captures use the fixed subnet 10.203.0.0/24 (registry host 10.203.0.1, client 10.203.0.2), as lab.md
does, so the texts are the same on every run. Each pair of namespaces is isolated, so other labs that
use the same subnet do not interfere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import lab

REPO = Path(__file__).resolve().parents[2]
FIXDIR = REPO / "fixtures" / "errors" / "dockerd-20.10"
UPDATE = os.environ.get("DDLAB_UPDATE_FIXTURES") == "1"
SUBNET_N = 203
SRV, CLI = f"10.{SUBNET_N}.0.1", f"10.{SUBNET_N}.0.2"
PORT = 5100
HP = f"{SRV}:{PORT}"  # the plain-HTTP registry
DAEMON_JSON = "/etc/docker/daemon.json"  # the private bind mount makes this path the same on every run
# Debian's CLI (20.10, same as the daemon) for `docker info` texts; the error texts come from the daemon.
CLI_BIN = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else None

# Fixed ports of the capture lab (all in the 10.203.0.1 namespace).
PORTS = {
    "plain": 5100,
    "tls": 5101,
    "tls_cn_only": 5102,
    "tls_wrong_name": 5103,
    "tls_expired": 5104,
    "htpasswd": 5105,
    "tls_not_yet_valid": 5106,
    "eof": 5107,
    "rst": 5108,
    "ssh": 5109,
    "silent": 5110,
    "refused": 5111,
    "nginx": 5112,
    "html": 5113,
    "filtered": 5120,
}

INDEX: dict[str, dict] = {}


def mask(text: str, d: lab.Dockerd | None) -> str:
    if d is not None:
        text = text.replace(str(d.workdir), "/tmp/dd-lab-X/d")
    return text


def norm(text: str) -> str:
    text = re.sub(r'time="[^"]*"', 'time="T"', text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "T", text)
    text = re.sub(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d", "T", text)
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:D", text)
    text = re.sub(r"(\d+\.\d+\.\d+\.\d+):\d+->", r"\1:P->", text)  # ephemeral source port
    text = re.sub(r"(handshake error from \d+\.\d+\.\d+\.\d+):\d+", r"\1:P", text)
    return text.strip()


def record(case: str, text: str, d: lab.Dockerd | None, **meta: object) -> str:
    """Save (or compare with) fixtures/errors/dockerd-20.10/<case>.txt; return the masked text."""
    text = mask(text, d).rstrip("\n") + "\n"
    path = FIXDIR / f"{case}.txt"
    INDEX[case] = {"file": path.name, **meta}
    if UPDATE or not path.exists():
        FIXDIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    else:
        stored, now = norm(path.read_text()), norm(text)
        if meta.get("kind") == "docker-info":  # the CLI prints IndexConfigs from a Go map: any order
            stored, now = sorted(stored.splitlines()), sorted(now.splitlines())
        variants = [norm(v) for v in meta.get("variants", [])]  # type: ignore[attr-defined]
        if stored in variants and now in variants:  # a racy case: any known variant is the same case
            now = stored
        assert stored == now, (
            f"dockerd's text for {case} changed; rerun with DDLAB_UPDATE_FIXTURES=1 if that is expected.\n"
            f"stored:   {path.read_text()!r}\ncaptured: {text!r}"
        )
    return text


def dockerd_version() -> str:
    r = subprocess.run([lab.dockerd_bin(), "--version"], capture_output=True, text=True)
    return r.stdout.strip()


def write_index() -> None:
    if not INDEX:
        return
    path = FIXDIR / "index.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    merged = {k: v for k, v in {**old.get("cases", {}), **INDEX}.items() if (FIXDIR / v["file"]).exists()}
    doc = {
        "what": "Texts captured from a real dockerd by tests/real/ (see README.md)",
        "dockerd": dockerd_version(),
        "registry_host": SRV,
        "client_host": CLI,
        "ports": PORTS,
        "cases": dict(sorted(merged.items())),
    }
    if UPDATE or not path.exists() or doc["cases"] != old.get("cases") or doc["ports"] != old.get("ports"):
        path.write_text(json.dumps(doc, indent=2) + "\n")


def push(d: lab.Dockerd, hostport: str = HP, repo: str = "lab/x:1", timeout: float = 60) -> subprocess.CompletedProcess:
    ref = f"{hostport}/{repo}"
    assert d.docker("tag", "lab/busybox:1", ref).returncode == 0
    return d.docker("push", ref, timeout=timeout)
