"""What a host says: files at their real paths, and the output of diagnostic commands.

A Source is either the live host or a snapshot. Facts read through this interface only, so
one parser serves both. Command output is addressed by a stable key (see COMMANDS), which the
live source runs and a snapshot looks up where sos stores it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from dockerdoctor.sources.specs import COMMANDS, CommandSpec

__all__ = ["COMMANDS", "DEFAULT_READ_LIMIT", "CommandSpec", "FileStat", "NoSource", "Source", "open_below",
           "resolve_in_root"]

# Bound on any single read: enough for any config file, small enough to never exhaust memory.
DEFAULT_READ_LIMIT = 4 * 1024 * 1024


MAX_SYMLINKS = 40


def resolve_in_root(root: str, path: str, follow_last: bool = True) -> list[str] | None:
    """The components of `path` resolved chroot-style under directory `root`: symbolic links are followed
    inside `root` (an absolute target starts again at `root`), ``..`` never climbs above it. None after
    more than MAX_SYMLINKS links (a loop)."""
    import os

    parts = [p for p in path.split("/") if p not in ("", ".")]
    stack: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if stack:
                stack.pop()
            continue
        if follow_last or parts:
            try:
                target = os.readlink(os.path.join(root, *stack, part))
            except (OSError, ValueError):  # not a link, or absent
                target = None
            if target is not None:
                links += 1
                if links > MAX_SYMLINKS:
                    return None
                if target.startswith("/"):
                    stack = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
        stack.append(part)
    return stack


def open_below(real_dir: str, rel: str) -> int:
    """An fd for the file `rel` below the directory `real_dir` (no symbolic link in it), opened component by
    component without following any link: a link put in the way after a realpath() check makes the open fail
    (OSError) instead of leading elsewhere."""
    import os

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(real_dir, flags | os.O_DIRECTORY)
    try:
        parts = [p for p in rel.split("/") if p]
        for part in parts[:-1]:
            nfd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileStat:
    mtime: float
    mode: int
    size: int


class Source(abc.ABC):
    """Read-only access to one host."""

    live: bool = False
    description: str = ""

    @abc.abstractmethod
    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        """Up to `limit` bytes of the file at absolute host `path`; None when absent or unreadable."""

    def read_text(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> str | None:
        data = self.read_bytes(path, limit, tail)
        if data is None:
            return None
        return data.decode("utf-8", errors="replace")

    @abc.abstractmethod
    def stat(self, path: str) -> FileStat | None: ...

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted; [] when absent."""

    @abc.abstractmethod
    def is_symlink_to(self, path: str) -> str | None:
        """The link target when `path` is a symbolic link, else None."""

    @abc.abstractmethod
    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        """Output of the diagnostic command `key` (see COMMANDS); None when unknown."""

    def command_source(self, key: str) -> str:
        """How to cite a command's output as evidence."""
        spec = COMMANDS.get(key)
        return " ".join(spec.live) if spec else key

    def close(self) -> None:  # noqa: B027  (a no-op default, not abstract: most sources hold nothing)
        """Release what the source holds (a snapshot's unpacked tarball); nothing by default."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoSource(Source):
    """A host that says nothing: for a fact store seeded with values (`Facts.from_values`)."""

    def __init__(self, live: bool = False) -> None:
        self.live = live
        self.description = "no source (seeded facts)"

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        return None

    def stat(self, path: str) -> FileStat | None:
        return None

    def listdir(self, path: str) -> list[str]:
        return []

    def is_symlink_to(self, path: str) -> str | None:
        return None

    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        return None
