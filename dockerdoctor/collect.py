"""`dockerdoctor collect`: write this host's evidence as a snapshot in sosreport layout.

The result is what `check --root` reads, so a host can be diagnosed elsewhere. Private keys are
never copied (only their names are recorded). From users' home directories only the spec table's
per-user rows are copied (rootless nerdctl/containerd configuration under /home/NAME/.config), bounded
in count and size, and a symbolic link there is followed only while it stays inside that home.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dockerdoctor.errors import InputError
from dockerdoctor.redact import Redactor
from dockerdoctor.sources import specs as spec_table
from dockerdoctor.sources.base import open_below
from dockerdoctor.sources.specs import (
    COMMANDS,
    CONTAINER_COMMANDS,
    CONTAINER_LIST,
    UNIT_DIRS,
    UNITS,
    collected_dirs,
    collected_files,
    collected_user_patterns,
)
from dockerdoctor.sources.specs import (
    FILES as FILE_SPECS,
)

# What collect copies, straight from the spec table (sources/specs.py): a fact that reads a file
# names it there, so the snapshot holds it.
FILES = collected_files()
DIRS = collected_dirs()
TAIL_FILES = frozenset(p for s in FILE_SPECS.values() if s.tail for p in s.paths)
SECRET_SUFFIXES = (".key",)  # by the name of the file or of a link's real target
PRIVATE_KEY = b"PRIVATE KEY-----"  # and by content: -----BEGIN (RSA |EC |OPENSSH |ENCRYPTED )PRIVATE KEY-----
NOT_COLLECTED = b"# private key not collected by dockerdoctor\n"
MAX_FILE = 4 * 1024 * 1024
COMMAND_TIMEOUT = 5.0


@dataclass(frozen=True)
class CollectSpec:
    """One step of a collection: a file, a directory tree, a unit (with its drop-ins), a command, or
    a command run once per container (`docker ps -a`; argv and path carry {id}, {name}, {image}, {image_file})."""

    kind: str  # "file" | "tree" | "unit" | "command" | "container" | "user-file" | "user-tree"
    path: str  # file/tree/unit: the host path; command/container: where sos keeps its output;
    #            user-file/user-tree: HOME_BASE/*/.config/REL, * standing for each home directory's name
    argv: tuple[str, ...] = ()
    tail: bool = False  # keep the end of a long file or output
    stderr: bool = False  # command/container: keep stderr too


def collect_specs() -> list[CollectSpec]:
    """Everything `dockerdoctor collect` (and `collect --script`) gathers, in order, from the spec table."""
    specs = [CollectSpec("file", f, tail=f in TAIL_FILES) for f in FILES]
    specs += [CollectSpec("tree", d) for d in DIRS]
    specs += [CollectSpec("unit", f"{d}/{name}") for d in UNIT_DIRS for name in UNITS.values()]
    for spec in COMMANDS.values():
        if "*" in spec.sos[0]:
            continue  # a glob names where sos may have put it, not one place to write
        specs.append(CollectSpec("command", spec.sos[0], tuple(spec.live), spec.tail))
    specs += [CollectSpec("container", c.sos, c.argv, c.tail, c.stderr) for c in CONTAINER_COMMANDS.values()]
    specs += [CollectSpec("user-tree" if tree else "user-file", p) for p, tree in collected_user_patterns()]
    return specs


def _parent_in(out: Path, dst: Path) -> None:
    """Make dst's parent directories under `out`, refusing any component that is a symbolic link: a link
    the snapshot holds (copied from the host) must never lead a later write out of it."""
    rel = dst.relative_to(out).parts[:-1]
    cur = out
    for part in rel:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "a link or file in the snapshot is in the way", str(cur))


def _write_new(dst: Path, data: bytes) -> None:
    """Write a file the snapshot does not hold yet; never through a link (O_NOFOLLOW)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _scrub(data: bytes, what: str, manifest: list[str], redactor: Redactor | None) -> bytes:
    """Secret values out (dockerdoctor.redact); the PEM blocks (certificates) in it are left as they are."""
    if redactor is None:
        return data
    data, n = redactor.redact(data)
    if n:
        manifest.append(f"redacted {n} secret value{'s' if n != 1 else ''} in {what}")
    return data


def _copy(src: str, out: Path, manifest: list[str], tail: bool = False, redactor: Redactor | None = None) -> None:
    dst = out / src.lstrip("/")
    try:
        if os.path.islink(src):
            _parent_in(out, dst)
            if not os.path.lexists(dst):
                os.symlink(os.readlink(src), dst)
            manifest.append(f"link {src}")
            # Store what the link points to too, or the snapshot holds a dangling link (etc/os-release ->
            # ../usr/lib/os-release). The snapshot reader resolves the link to it, chroot-style.
            target = os.path.realpath(src)
            if target != src and os.path.isfile(target) and not os.path.lexists(out / target.lstrip("/")):
                _copy(target, out, manifest, tail, redactor)
            return
        if not os.path.isfile(src):
            return
        _parent_in(out, dst)
        if src.endswith(SECRET_SUFFIXES) or os.path.realpath(src).endswith(SECRET_SUFFIXES):
            _write_new(dst, NOT_COLLECTED)
            manifest.append(f"redacted {src}")
            return
        with open(src, "rb") as fh:
            if tail and os.fstat(fh.fileno()).st_size > MAX_FILE:
                fh.seek(-MAX_FILE, os.SEEK_END)
            data = fh.read(MAX_FILE)
        if PRIVATE_KEY in data:  # a private key in a file of any name (a .pem bundle)
            _write_new(dst, NOT_COLLECTED)
            shutil.copystat(src, dst, follow_symlinks=False)
            manifest.append(f"redacted {src}")
            return
        _write_new(dst, _scrub(data, src, manifest, redactor))
        shutil.copystat(src, dst, follow_symlinks=False)
        manifest.append(f"file {src}")
    except OSError as exc:
        manifest.append(f"error {src}: {exc.strerror}")


def _run(argv: list[str], stderr: bool) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL,
                          timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
                          env={**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": ""})


def _command(argv: tuple[str, ...], rel: str, tail: bool, stderr: bool, out: Path, manifest: list[str],
             redactor: Redactor | None = None) -> None:
    if not shutil.which(argv[0]):
        return
    try:
        proc = _run(list(argv), stderr)
    except (OSError, subprocess.SubprocessError) as exc:
        manifest.append(f"error {' '.join(argv)}: {exc}")
        return
    dst = out / rel
    try:
        _parent_in(out, dst)
        data = proc.stdout[-MAX_FILE:] if tail else proc.stdout[:MAX_FILE]
        _write_new(dst, _scrub(data, " ".join(argv), manifest, redactor))
    except OSError as exc:
        manifest.append(f"error {' '.join(argv)} -> {rel}: {exc.strerror}")
        return
    manifest.append(f"command {' '.join(argv)} -> {rel} (rc {proc.returncode})")


def _containers() -> list[dict[str, str]]:
    """id, name, image (and image as a file name) of every container `docker ps -a` lists; [] without docker."""
    if not shutil.which(CONTAINER_LIST[0]):
        return []
    try:
        proc = _run(list(CONTAINER_LIST), False)
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines() if proc.returncode == 0 else []:
        parts = line.split("\t")
        if len(parts) == 3 and all(parts):
            out.append({"id": parts[0], "name": parts[1], "image": parts[2], "image_file": parts[2].replace("/", "_")})
    return out


def _homes() -> list[str]:
    """The home directories per-user rows look into: HOME_BASE/NAME, in name order, at most MAX_USER_HOMES."""
    base = spec_table.HOME_BASE
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [f"{base}/{n}" for n in names if os.path.isdir(f"{base}/{n}")][:spec_table.MAX_USER_HOMES]


def _copy_from_home(home: str, src: str, out: Path, manifest: list[str], redactor: Redactor | None = None) -> None:
    """Copy `src` (a path under `home`) into the snapshot at `src` as a regular file: a link is followed only
    while it stays inside `home`; files over MAX_USER_FILE and private keys are left out."""
    real_home = os.path.realpath(home)
    real = os.path.realpath(src)
    if not os.path.lexists(src):
        return
    if not real.startswith(real_home + "/"):
        manifest.append(f"skipped {src}: a link out of {home}")
        return
    try:
        fd = open_below(real_home, os.path.relpath(real, real_home))
    except OSError as exc:
        manifest.append(f"error {src}: {exc.strerror}")
        return
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return
        if st.st_size > spec_table.MAX_USER_FILE:
            manifest.append(f"skipped {src}: over {spec_table.MAX_USER_FILE} bytes")
            return
        secret = src.endswith(SECRET_SUFFIXES) or real.endswith(SECRET_SUFFIXES)
        data = b"" if secret else fh.read(spec_table.MAX_USER_FILE)
        secret = secret or PRIVATE_KEY in data
        data = NOT_COLLECTED if secret else _scrub(data, src, manifest, redactor)
    dst = out / src.lstrip("/")
    try:
        _parent_in(out, dst)
        _write_new(dst, data)
        os.utime(dst, (st.st_atime, st.st_mtime), follow_symlinks=False)
    except OSError as exc:
        manifest.append(f"error {src}: {exc.strerror}")
        return
    manifest.append(f"redacted {src}" if secret else f"file {src}" + (f" (link to {real})" if real != src else ""))


def _user_rows(s: CollectSpec, homes: list[str], out: Path, manifest: list[str], redactor: Redactor) -> None:
    rel = s.path.split("/*/", 1)[1]
    for home in homes:
        src = f"{home}/{rel}"
        if s.kind == "user-file":
            _copy_from_home(home, src, out, manifest, redactor)
            continue
        real_home, real = os.path.realpath(home), os.path.realpath(src)
        if not os.path.isdir(real):
            continue
        if not real.startswith(real_home + "/"):
            manifest.append(f"skipped {src}: a link out of {home}")
            continue
        found = sorted(os.path.join(root, n) for root, _d, files in os.walk(real) for n in files)
        if len(found) > spec_table.MAX_USER_TREE_FILES:
            manifest.append(f"skipped {len(found) - spec_table.MAX_USER_TREE_FILES} files of {src}: "
                            f"over {spec_table.MAX_USER_TREE_FILES}")
        for f in found[:spec_table.MAX_USER_TREE_FILES]:
            _copy_from_home(home, src + f[len(real):], out, manifest, redactor)


def collect(out: Path) -> list[str]:
    """Write the snapshot into `out`; returns the manifest lines (also saved as dockerdoctor-collect.txt)."""
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[str] = []
    redactor = Redactor()  # one salt per snapshot: equal secrets stay equal inside it
    specs = collect_specs()
    for s in specs:
        if s.kind == "file":
            _copy(s.path, out, manifest, tail=s.tail, redactor=redactor)
        elif s.kind == "tree":
            for root, _dirs, files in sorted(os.walk(s.path)):
                for name in sorted(files):
                    _copy(os.path.join(root, name), out, manifest, redactor=redactor)
        elif s.kind == "unit":
            _copy(s.path, out, manifest, redactor=redactor)
            dropins = f"{s.path}.d"
            if os.path.isdir(dropins):
                for entry in sorted(os.listdir(dropins)):
                    _copy(f"{dropins}/{entry}", out, manifest, redactor=redactor)
        elif s.kind == "command":
            _command(s.argv, s.path, s.tail, s.stderr, out, manifest, redactor)
    user_rows = [s for s in specs if s.kind in ("user-file", "user-tree")]
    homes = _homes() if user_rows else []
    for s in user_rows:
        _user_rows(s, homes, out, manifest, redactor)
    per_container = [s for s in specs if s.kind == "container"]
    seen: set[str] = set()
    for c in _containers() if per_container else []:
        for s in per_container:
            rel = s.path.format(**c)
            if rel in seen:
                continue  # one image inspect for all its containers
            seen.add(rel)
            _command(tuple(a.format(**c) for a in s.argv), rel, s.tail, s.stderr, out, manifest, redactor)
    # the manifest names commands and paths; those could carry a secret too
    _write_new(out / "dockerdoctor-collect.txt", redactor.redact(("\n".join(manifest) + "\n").encode())[0])
    return manifest


def pack(out: Path) -> Path:
    tar = out.with_name(out.name + ".tar.xz")
    with tarfile.open(tar, "w:xz") as t:
        t.add(out, arcname=out.name)
    return tar
