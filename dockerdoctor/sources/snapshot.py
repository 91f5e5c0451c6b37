"""A snapshot: a host root, an unpacked sosreport, or a sosreport tarball.

Every path is resolved as if the snapshot were the root directory (symbolic links included,
absolute ones too), so nothing outside DIR is ever read.
"""

from __future__ import annotations

import fnmatch
import os
import stat as stat_mod
import tempfile
from pathlib import Path

from dockerdoctor.errors import InputError
from dockerdoctor.sources.base import COMMANDS, DEFAULT_READ_LIMIT, FileStat, Source, resolve_in_root

# Bounds for unpacking a tarball: a sosreport is a few hundred MB and some ten thousand files at most.
MAX_UNPACKED_BYTES = 1024**3
MAX_MEMBERS = 100_000
_MARKERS = ("etc", "sos_commands", "usr", "var", "proc", "sos_reports")


def _exists(p: Path) -> bool:
    """Path.exists/is_dir/is_file that answer False for any OSError (a 300-character link target raises
    ENAMETOOLONG, not one of the errors pathlib swallows)."""
    try:
        return p.exists()
    except OSError:
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:
        return False


class SnapshotSource(Source):
    live = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.notes: list[str] = []  # what the reader must know about this snapshot (skipped members)
        given = Path(root)
        if not _exists(given):
            raise InputError(f"snapshot not found: {given}")
        if _is_file(given):
            given = self._unpack(given)
        if not _is_dir(given):
            raise InputError(f"not a directory or a tarball: {root}")
        self.root = self._find_root(given.resolve())
        self.description = f"snapshot {root}"
        self.is_sosreport = _is_dir(self.root / "sos_commands")

    # ------------------------------------------------------------------ setup
    def _unpack(self, path: Path) -> Path:
        name = path.name
        if not name.endswith((".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2")):
            raise InputError(f"{path}: not a directory or a .tar.xz/.tar.gz sosreport")
        import tarfile  # only for tarballs: ~10 ms to import

        self._tmp = tempfile.TemporaryDirectory(prefix="dockerdoctor-snap-")
        dest = Path(self._tmp.name)
        skipped: dict[str, int] = {}

        def skip(why: str) -> None:
            skipped[why] = skipped.get(why, 0) + 1

        def keep_absolute_links(member: tarfile.TarInfo, where: str) -> tarfile.TarInfo | None:
            # A link to an absolute path (etc/localtime -> /usr/share/zoneinfo/UTC, systemd's enablement
            # links) is valid inside a snapshot: every read resolves it chroot-style. The data filter still
            # judges its name, and refuses any member that would land outside through an earlier link.
            if member.issym() and member.linkname.startswith("/"):
                checked = tarfile.data_filter(member.replace(linkname=".", deep=False), where)
                return checked.replace(linkname=member.linkname, deep=False)
            return tarfile.data_filter(member, where)

        try:
            with tarfile.open(path) as tar:
                # The headers first: a tarball over the bounds is refused before anything is written.
                members, total = [], 0
                for i, m in enumerate(tar):
                    if i >= MAX_MEMBERS:
                        raise InputError(f"{path}: more than {MAX_MEMBERS:,} members; a sosreport has far fewer")
                    total += max(m.size, 0) if m.isfile() else 0
                    if total > MAX_UNPACKED_BYTES:
                        raise InputError(f"{path}: unpacks to more than {MAX_UNPACKED_BYTES // 1024**3} GiB; "
                                         "a sosreport is far smaller")
                    members.append(m)
                for m in members:
                    if m.isdev() or m.isfifo():
                        skip("device or fifo")
                        continue
                    if m.name.startswith("/") or ".." in Path(m.name).parts:
                        skip("name outside the snapshot (absolute or ..)")
                        continue
                    try:
                        tar.extract(m, dest, filter=keep_absolute_links)
                    except tarfile.FilterError:
                        skip("would land outside the snapshot through a link")
                    except OSError:
                        skip("could not be written")
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            first = str(exc).splitlines()[0].rstrip(": ") if str(exc) else exc.__class__.__name__
            raise InputError(f"{path}: unreadable tarball ({first or exc.__class__.__name__})") from None
        if skipped:
            n = sum(skipped.values())
            self.notes.append(f"{path.name}: skipped {n} unsafe member{'s' if n != 1 else ''} "
                              f"({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})")
        return dest

    @staticmethod
    def _find_root(path: Path) -> Path:
        if any(_exists(path / m) for m in _MARKERS):
            return path
        try:
            entries = [p for p in path.iterdir() if not p.name.startswith(".")] if _is_dir(path) else []
        except OSError:
            entries = []
        dirs = [p for p in entries if _is_dir(p) and not p.is_symlink()]
        if len(dirs) == 1 and any(_exists(dirs[0] / m) for m in _MARKERS):
            return dirs[0]
        raise InputError(
            f"{path}: does not look like a host root or a sosreport (no etc/, usr/, var/ or sos_commands/)"
        )

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # ------------------------------------------------------------------ path resolution
    def _resolve(self, path: str, follow_last: bool = True) -> Path | None:
        """Resolve a host path inside the snapshot root, chroot-style."""
        stack = resolve_in_root(str(self.root), path, follow_last)
        if stack is None:
            return None
        resolved = self.root.joinpath(*stack)
        return resolved

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        p = self._resolve(path)
        if p is None:
            return None
        try:
            if not p.is_file():
                return None
            with open(p, "rb") as fh:
                if tail:
                    size = os.fstat(fh.fileno()).st_size
                    if size > limit:
                        fh.seek(size - limit)
                return fh.read(limit)
        except OSError:
            return None

    def stat(self, path: str) -> FileStat | None:
        p = self._resolve(path)
        if p is None:
            return None
        try:
            st = p.stat()
        except OSError:
            return None
        return FileStat(st.st_mtime, st.st_mode, st.st_size)

    def listdir(self, path: str) -> list[str]:
        p = self._resolve(path)
        if p is None:
            return []
        try:
            return sorted(os.listdir(p))
        except OSError:
            return []

    def is_symlink_to(self, path: str) -> str | None:
        p = self._resolve(path, follow_last=False)
        if p is None:
            return None
        try:
            if stat_mod.S_ISLNK(os.lstat(p).st_mode):
                return os.readlink(p)
        except OSError:
            return None
        return None

    # ------------------------------------------------------------------ commands
    def command_path(self, key: str) -> str | None:
        spec = COMMANDS[key]
        for pattern in spec.sos:
            directory, _, name = pattern.rpartition("/")
            for entry in self.listdir("/" + directory):
                if fnmatch.fnmatchcase(entry, name):
                    rel = f"{directory}/{entry}"
                    if self.exists("/" + rel):
                        return rel
        return None

    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        rel = self.command_path(key)
        if rel is None:
            return None
        return self.read_text("/" + rel, limit=limit, tail=COMMANDS[key].tail)

    def command_source(self, key: str) -> str:
        rel = self.command_path(key)
        return rel or super().command_source(key)
