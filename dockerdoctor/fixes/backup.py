"""Backups of every file `fix --apply` changes, atomic writes, and rollback.

Layout under the state directory (default /var/lib/dockerdoctor, moved with --state-dir):

    backups/RUN-ID/manifest.json   what the run changed, and how far it got
    backups/RUN-ID/files/N         the original bytes of file N (absent files have none)

The manifest's ``status`` tells how far a run got: ``prepared`` (backups being taken, nothing
written yet), ``writing`` (backups complete, files may have changed: a crash here leaves a run the
next `fix` detects and offers to roll back), ``applied``, ``rolled-back`` or ``failed``.
Every write, of the backups as of the host's files, is temp file + fsync + rename, so a crash or a
full disk leaves either the old or the new file, never a partial one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dockerdoctor.errors import DoctorError

DEFAULT_STATE_DIR = "/var/lib/dockerdoctor"
SELINUX_XATTR = "security.selinux"
MANIFEST_SCHEMA = 1


class BackupError(DoctorError):
    """A backup cannot be taken, found or restored."""


def sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def get_selinux_label(path: str) -> bytes | None:
    try:
        return os.getxattr(path, SELINUX_XATTR, follow_symlinks=False)
    except (OSError, AttributeError):
        return None


def _xattrs(path: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(path)
    except (OSError, AttributeError):
        return out
    for name in names:
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name)
    return out


def atomic_write(
    path: str,
    data: bytes,
    *,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    selinux: bytes | None = None,
) -> None:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync the directory.

    The new file gets `mode` and owner (the old file's when not given) and the old file's extended
    attributes (its SELinux label, ACLs); `selinux` sets the label explicitly. On any error the temp
    file is removed and the old file is untouched.
    """
    directory = os.path.dirname(path) or "."
    old: os.stat_result | None
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old else 0o644
    if uid is None and old is not None:
        uid, gid = old.st_uid, old.st_gid
    xattrs = _xattrs(path) if old is not None else {}
    if selinux is not None:
        xattrs[SELINUX_XATTR] = selinux
    tmp = os.path.join(directory, f".{os.path.basename(path)}.dd-tmp-{os.getpid()}-{secrets.token_hex(3)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
            os.fchmod(fd, mode)
            if uid is not None and gid is not None and (uid, gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, uid, gid)
            for name, value in xattrs.items():  # SELinux label, ACLs, user attributes
                with contextlib.suppress(OSError):
                    os.setxattr(tmp, name, value)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def write_json_atomic(path: Path, data: Any) -> None:
    atomic_write(str(path), (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)


# --------------------------------------------------------------------------- manifest


@dataclass
class FileRecord:
    path: str  # as the fix names it (/etc/docker/daemon.json)
    real: str  # where it was written (may be under /proc/PID/root, or a snapshot copy)
    existed: bool
    backup: str | None  # file name under files/
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    selinux: str | None = None  # hex of the xattr value
    sha_before: str | None = None
    sha_after: str | None = None
    created_dirs: list[str] = field(default_factory=list)
    home: str | None = None  # a fix in a user's home: restored only through no-follow fds from this directory


@dataclass
class RunRecord:
    run_id: str
    created: str
    status: str
    dir: Path
    files: list[FileRecord] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    service: dict[str, Any] = field(default_factory=dict)  # {"action": ..., "daemon_reload": bool}
    commands: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "dir"}
        d["schema_version"] = MANIFEST_SCHEMA
        return d

    def save(self) -> None:
        write_json_atomic(self.dir / "manifest.json", self.to_dict())

    def note(self, text: str) -> None:
        self.log.append(text)


class BackupStore:
    def __init__(self, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> None:
        self.state_dir = Path(state_dir)
        self.backups = self.state_dir / "backups"

    # -- locking: one apply or rollback at a time per state dir
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        try:
            self.backups.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise BackupError(f"cannot use the state directory {self.state_dir}: {exc.strerror} "
                              "(name another with --state-dir)") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupError(f"another dockerdoctor fix is running (lock {self.state_dir / 'lock'})") from None
            yield
        finally:
            os.close(fd)

    def new_run(self, target: str = "") -> RunRecord:
        now = dt.datetime.now(dt.timezone.utc)
        run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
        d = self.backups / run_id
        try:
            (d / "files").mkdir(parents=True, mode=0o700)
        except OSError as exc:
            raise BackupError(f"cannot create {d}: {exc.strerror}") from None
        rec = RunRecord(run_id, now.isoformat(timespec="seconds"), "prepared", d, target=target)
        rec.save()
        return rec

    def backup_file(self, rec: RunRecord, path: str, real: str, io: str | None = None) -> FileRecord:
        """Copy `real` (opened as `io` when given) into the run, or note that it does not exist yet."""
        io = io or real
        try:
            st = os.lstat(io)
        except FileNotFoundError:
            fr = FileRecord(path, real, existed=False, backup=None)
            rec.files.append(fr)
            return fr
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise BackupError(f"{path} is not a regular file; dockerdoctor does not edit it")
        with open(io, "rb") as fh:
            data = fh.read()
        name = str(len(rec.files))
        atomic_write(str(rec.dir / "files" / name), data, mode=0o600)
        label = get_selinux_label(io)
        fr = FileRecord(
            path,
            real,
            True,
            name,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            label.hex() if label is not None else None,
            sha256(data),
        )
        rec.files.append(fr)
        return fr

    def load(self, run_id: str) -> RunRecord:
        if run_id in ("last", "latest"):
            runs = self.list_runs()
            if not runs:
                raise BackupError(f"no backups in {self.backups}")
            return runs[-1]
        d = self.backups / run_id
        if "/" in run_id or not (d / "manifest.json").is_file():
            raise BackupError(f"no backup {run_id!r} in {self.backups} (see `dockerdoctor fix --list-backups`)")
        return self._read(d)

    def _read(self, d: Path) -> RunRecord:
        try:
            raw = json.loads((d / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise BackupError(f"unreadable manifest {d / 'manifest.json'}: {exc}") from None
        files = [FileRecord(**f) for f in raw.get("files", [])]
        return RunRecord(
            raw["run_id"],
            raw.get("created", ""),
            raw.get("status", "?"),
            d,
            files,
            raw.get("findings", []),
            raw.get("service", {}),
            raw.get("commands", []),
            raw.get("log", []),
            raw.get("target", ""),
        )

    def list_runs(self) -> list[RunRecord]:
        out: list[RunRecord] = []
        try:
            if not self.backups.is_dir():
                return out
            entries = sorted(self.backups.iterdir())
        except OSError as exc:  # e.g. a non-root user and root's 0700 state directory
            raise BackupError(f"cannot read the backups in {self.backups}: {exc.strerror}; "
                              "run as the user who made them, or name another directory with --state-dir") from None
        for d in entries:
            if (d / "manifest.json").is_file():
                with contextlib.suppress(BackupError, KeyError, TypeError, OSError):
                    out.append(self._read(d))
        return out

    def unfinished(self) -> list[RunRecord]:
        """Runs that stopped after their backups were complete but before they finished (a crash).

        A run still ``prepared`` never wrote a host file, so it is harmless and not listed.
        """
        return [r for r in self.list_runs() if r.status == "writing"]

    # -- restore
    def restore_files(
        self, rec: RunRecord, *, check_current: bool = False, to_io: Callable[[str], str] | None = None
    ) -> list[str]:
        """Put every file back as it was before the run (byte-identical, same mode/owner/label).

        With `check_current`, refuse when a file changed since the run wrote it (someone edited it
        afterwards); a rollback must not throw that work away silently.
        """
        io = to_io or (lambda p: p)
        if check_current:
            for f in rec.files:
                current = _read_or_none(io(f.real))
                if f.sha_after is not None and sha256(current) not in (f.sha_after, f.sha_before):
                    raise BackupError(
                        f"{f.path} changed after run {rec.run_id} wrote it; not rolling back over that change"
                    )
        restored: list[str] = []
        for f in reversed(rec.files):
            if f.home is not None:
                restored += _restore_in_home(rec, f, io)
                continue
            if f.existed:
                assert f.backup is not None
                data = (rec.dir / "files" / f.backup).read_bytes()
                if sha256(data) != f.sha_before:
                    raise BackupError(f"the backup of {f.path} in {rec.dir} is damaged (checksum mismatch)")
                if _read_or_none(io(f.real)) != data or _mode_of(io(f.real)) != f.mode:
                    atomic_write(
                        io(f.real),
                        data,
                        mode=f.mode,
                        uid=f.uid,
                        gid=f.gid,
                        selinux=bytes.fromhex(f.selinux) if f.selinux else None,
                    )
                    restored.append(f.path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(io(f.real))
                    restored.append(f.path)
                for d in reversed(f.created_dirs):
                    with contextlib.suppress(OSError):
                        os.rmdir(io(d))
        return restored


def _restore_in_home(rec: RunRecord, f: FileRecord, io: Callable[[str], str]) -> list[str]:
    """Restore a file of a fix in a user's home through directory fds reached from that home without following
    a link: a link she put in since makes the rollback refuse, not write or delete as root where it leads."""
    from dockerdoctor.fixes.paths import dir_below

    assert f.home is not None
    if not f.existed and f.sha_after is None and not f.created_dirs:
        return []  # never written (refused before): nothing to undo
    home = io(f.home)

    def parent_fd(real: str) -> int:
        try:
            return dir_below(home, os.path.relpath(os.path.dirname(real), f.home or ""))
        except OSError as exc:
            raise BackupError(f"{f.path}: a folder on the way is no longer a plain folder inside {f.home} "
                              f"({exc.strerror or exc}); not restored") from None

    name = os.path.basename(f.real)
    fd = parent_fd(f.real)
    try:
        if f.existed:
            assert f.backup is not None
            data = (rec.dir / "files" / f.backup).read_bytes()
            if sha256(data) != f.sha_before:
                raise BackupError(f"the backup of {f.path} in {rec.dir} is damaged (checksum mismatch)")
            atomic_write(f"/proc/self/fd/{fd}/{name}", data, mode=f.mode, uid=f.uid, gid=f.gid)
            return [f.path]
        done = []
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
            done.append(f.path)
    finally:
        os.close(fd)
    for d in reversed(f.created_dirs):
        with contextlib.suppress(OSError, BackupError):
            pfd = parent_fd(d)
            try:
                os.rmdir(os.path.basename(d), dir_fd=pfd)
            finally:
                os.close(pfd)
    return done


def _read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None


def _mode_of(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
