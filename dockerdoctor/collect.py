"""`dockerdoctor collect`: write this host's evidence as a snapshot in sosreport layout.

The result is what `check --root` reads, so a host can be diagnosed elsewhere. Private keys are
never copied (only their names are recorded), and nothing is collected from users' home
directories, except root's containers/image configuration (~/.config/containers: it replaces the system
registries.conf); its auth.json files are written with the registry names only, never the credentials.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from dockerdoctor.errors import InputError
from dockerdoctor.facts.systemd import UNIT_DIRS
from dockerdoctor.sources.base import COMMANDS

FILES = [
    "/etc/docker/daemon.json",
    "/etc/sysconfig/docker",
    "/etc/sysconfig/docker-storage",
    "/etc/sysconfig/docker-network",
    "/etc/default/docker",
    "/etc/containers/registries.conf",
    "/run/containers/registries.conf",
    "/etc/selinux/config",
    "/etc/os-release",
    "/etc/hostname",  # names the host in fleet reports
]
DIRS = ["/etc/firewalld/zones", "/etc/docker/certs.d"]
SECRET_SUFFIXES = (".key",)
MAX_FILE = 4 * 1024 * 1024
COMMAND_TIMEOUT = 5.0


def _copy(src: str, out: Path, manifest: list[str]) -> None:
    dst = out / src.lstrip("/")
    try:
        if os.path.islink(src):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.symlink(os.readlink(src), dst)
            manifest.append(f"link {src}")
            return
        if not os.path.isfile(src):
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.endswith(SECRET_SUFFIXES):
            dst.write_text("# private key not collected by dockerdoctor\n")
            manifest.append(f"redacted {src}")
            return
        with open(src, "rb") as fh:
            dst.write_bytes(fh.read(MAX_FILE))
        shutil.copystat(src, dst)
        manifest.append(f"file {src}")
    except OSError as exc:
        manifest.append(f"error {src}: {exc.strerror}")


def collect(out: Path, daemon_root: str = "") -> list[str]:
    """Write the snapshot into `out`; returns the manifest lines (also saved as dockerdoctor-collect.txt)."""
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[str] = []
    for f in FILES:
        # daemon.json and certs.d as the daemon sees them (its mount namespace), when known
        _copy(f, out, manifest)
    for d in DIRS:
        for root, _dirs, files in os.walk(d):
            for name in files:
                _copy(os.path.join(root, name), out, manifest)
    _collect_containers(out, manifest)
    for unit_dir in UNIT_DIRS:
        for name in ("docker.service", "docker.socket"):
            _copy(f"{unit_dir}/{name}", out, manifest)
            dropins = f"{unit_dir}/{name}.d"
            if os.path.isdir(dropins):
                for entry in sorted(os.listdir(dropins)):
                    _copy(f"{dropins}/{entry}", out, manifest)
    for key, spec in COMMANDS.items():
        if "{" in " ".join(spec.live) or not shutil.which(spec.live[0]):
            continue
        rel = spec.sos[0]
        if "*" in rel:
            continue
        try:
            proc = subprocess.run(list(spec.live), capture_output=True, timeout=COMMAND_TIMEOUT,
                                  stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": ""})
        except (OSError, subprocess.SubprocessError) as exc:
            manifest.append(f"error {key}: {exc}")
            continue
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(proc.stdout[-MAX_FILE:] if spec.tail else proc.stdout[:MAX_FILE])
        manifest.append(f"command {' '.join(spec.live)} -> {rel} (rc {proc.returncode})")
    (out / "dockerdoctor-collect.txt").write_text("\n".join(manifest) + "\n")
    return manifest


def _collect_containers(out: Path, manifest: list[str]) -> None:
    """The paths of dockerdoctor.runtimes.CONTAINERS_PATHS (registries.conf, drop-ins, certs.d, crio.conf)."""
    import json

    from dockerdoctor.runtimes import CONTAINERS_PATHS, _auth_keys

    for spec in CONTAINERS_PATHS:
        live = spec.live.replace("~", "/root").replace("{xdg}", "/run/containers/0" if "{xdg}" in spec.live else "")
        dst_rel = spec.sos[0]
        if spec.secret:
            try:
                with open(live, encoding="utf-8", errors="replace") as fh:
                    keys = _auth_keys(fh.read(MAX_FILE))
            except OSError:
                continue
            dst = out / dst_rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps({"auths": {k: {} for k in sorted(keys)}}, indent=1) + "\n")
            manifest.append(f"redacted {live} (registry names only)")
        elif spec.kind == "file":
            if live not in FILES:
                _copy(live, out, manifest)
        elif live not in DIRS:
            for root, _dirs, files in os.walk(live):
                for name in files:
                    _copy(os.path.join(root, name), out, manifest)


def pack(out: Path) -> Path:
    tar = out.with_name(out.name + ".tar.xz")
    with tarfile.open(tar, "w:xz") as t:
        t.add(out, arcname=out.name)
    return tar
