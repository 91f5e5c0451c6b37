"""Where a fix reads and writes a host path: in a snapshot, through the running daemon's mount
namespace (/proc/PID/root), or as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from dockerdoctor.facts import Facts


class PathMapper:
    """Where a path of the plan is really written.

    Offline (a snapshot copy) every path lives under the snapshot root. Live, the daemon's own
    files (/etc/docker/**, and its --config-file) are reached through /proc/PID/root when dockerd
    runs in a mount namespace of its own, so the file it reads is the file that changes.
    """

    def __init__(self, root: str | None = None, proc_root: str | None = None, daemon_json_path: str | None = None):
        self.root = root
        self.proc_root = proc_root
        self.daemon_json_path = daemon_json_path
        # /proc/PID/root/DIR -> /proc/self/fd/N: a directory fd pinned while dockerd still runs keeps
        # its mount namespace's files reachable after dockerd exits (a failed restart, then rollback).
        self._pinned: dict[str, str] = {}

    @classmethod
    def for_facts(cls, facts: Facts) -> PathMapper:
        root = getattr(facts.source, "root", None) if not facts.live else None
        proc = facts.optional("dockerd_process") if facts.live else None
        dj = facts.optional("daemon_json")
        return cls(
            str(root) if root else None,
            proc.root_prefix if proc is not None else None,
            dj.path if dj is not None else None,
        )

    def real(self, path: str) -> str:
        if self.root:
            # Chroot-style, as the snapshot reader resolves it: a link inside the snapshot (etc/docker ->
            # /elsewhere, or ../../..) leads to a path under the root, never out of it. The last
            # component is not followed, so a symlinked daemon.json is still refused as one.
            from dockerdoctor.errors import ApplyError
            from dockerdoctor.sources.base import resolve_in_root

            stack = resolve_in_root(self.root, path, follow_last=False)
            if stack is None:
                raise ApplyError(f"{path}: too many symbolic links in the snapshot")
            return os.path.join(self.root, *stack)
        if self.proc_root and (path.startswith("/etc/docker/") or path == self.daemon_json_path):
            base = "/etc/docker" if path.startswith("/etc/docker/") else os.path.dirname(path)
            mapped = self.proc_root + base
            if mapped in self._pinned or (os.path.isdir(mapped) and not _same_dir(mapped, base)):
                self._pin(mapped)
                return self.proc_root + path
        return path

    def _pin(self, mapped: str) -> None:
        if mapped in self._pinned:
            return
        try:
            fd = os.open(mapped, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        self._pinned[mapped] = f"/proc/self/fd/{fd}"

    def to_io(self, real: str) -> str:
        """The path to open for `real` now (through a pinned directory when there is one)."""
        for mapped, pinned in self._pinned.items():
            if real == mapped or real.startswith(mapped + "/"):
                return pinned + real[len(mapped) :]
        return real


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


_PROC_ROOT = re.compile(r"^/proc/\d+/root(?=/)")


def io_remapper(mapper: PathMapper | None) -> Callable[[str], str] | None:
    """A run recorded /proc/OLDPID/root/...: when that dockerd is gone, reach the file through the
    dockerd that runs now (same mount namespace layout)."""
    if mapper is None:
        return None

    def to_io(real: str) -> str:
        m = _PROC_ROOT.match(real)
        if m and not os.path.exists(m.group(0)):
            return mapper.to_io(mapper.real(real[m.end() :]))
        return real

    return to_io


def outside_home(io_path: str, io_home: str) -> str | None:
    """Where `io_path` really leads when that is not inside the directory `io_home` (a user's home, as the
    fix reaches it), else None. The path need not exist yet: its nearest existing directory is resolved."""
    home = os.path.realpath(io_home)
    real = os.path.realpath(io_path)
    return None if real == home or real.startswith(home.rstrip("/") + "/") else real


def dir_below(io_home: str, rel: str) -> int:
    """An O_PATH fd of the directory `rel` below `io_home`, reached component by component without following
    any link (OSError if one is in the way): what a fix in a user's home writes through."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(f"{rel}: not a path below {io_home}")
    fd = os.open(os.path.realpath(io_home), flags)
    try:
        for part in parts:
            nfd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def give_to(io_home: str, rels: list[str], uid: int, gid: int) -> None:
    """chown each of `rels` (paths below `io_home`, parents first) to uid:gid, reached component by component
    from the home with O_NOFOLLOW and changed with AT_SYMLINK_NOFOLLOW: a link put anywhere on the way makes
    it fail (OSError) instead of handing the user a file outside her home."""
    for rel in rels:
        head, name = os.path.split(rel.strip("/"))
        if not name or name == "..":
            raise OSError(f"{rel}: not a path below {io_home}")
        fd = dir_below(io_home, head)
        try:
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)
