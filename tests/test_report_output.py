"""report.write_output, behind `check -o` and `report -o`: atomic, nothing left behind on failure, and a
device or FIFO target is written, never replaced."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dockerdoctor.errors import InputError
from dockerdoctor.report import write_output

HOSTS = Path(__file__).parent.parent / "fixtures" / "hosts"
DD = [sys.executable, "-m", "dockerdoctor"]


def test_stdout_when_no_file(capsys: pytest.CaptureFixture[str]) -> None:
    write_output("hello\n", None)
    assert capsys.readouterr().out == "hello\n"


def test_writes_and_replaces_leaving_only_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    write_output("one ✓\n", out)
    out.write_text("old")
    write_output("two ✓\n", out)
    assert out.read_text(encoding="utf-8") == "two ✓\n"
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_failed_rename_leaves_no_temporary_and_the_old_file(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.txt"
    out.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError, match=r"cannot write .*r\.txt: No space left on device"):
        write_output("new", out)
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.txt"]


def test_a_directory_target_is_an_input_error_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="Is a directory"):
        write_output("x", tmp_path / "d")
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


def test_a_missing_parent_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file or directory"):
        write_output("x", tmp_path / "no" / "r.txt")
    assert os.listdir(tmp_path) == []


def test_a_fifo_is_written_in_place_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    try:
        write_output("through the pipe\n", fifo)
        reader.join(10)
    finally:
        if reader.is_alive():  # a failed write: the reader still waits for a writer, or for the end
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader has it open (yet or any more)
                pass
            reader.join(10)
    assert got == ["through the pipe\n"]
    assert fifo.is_fifo() and os.listdir(tmp_path) == ["pipe"]


@pytest.mark.parametrize("argv", [
    ["check", "--root", str(HOSTS / "centos7-yum-docker-healthy"), "-o"],
    ["report", str(HOSTS), "-o"],
], ids=["check", "report"])
def test_the_commands_leave_no_temporary_on_failure(tmp_path: Path, argv: list[str]) -> None:
    if argv[0] == "report":  # report needs a host report to merge
        rep = tmp_path / "in"
        rep.mkdir()
        done = subprocess.run([*DD, "check", "--root", str(HOSTS / "centos7-yum-docker-healthy"), "-f", "json"],
                              capture_output=True, text=True, timeout=120)
        (rep / "h.json").write_text(done.stdout)
        argv = ["report", str(rep), "-o"]
    target = tmp_path / "out"
    target.mkdir()
    r = subprocess.run([*DD, *argv, str(target)], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert r.returncode == 2 and r.stderr == f"dockerdoctor: error: cannot write {target}: Is a directory\n"
    assert sorted(os.listdir(tmp_path)) == (["in", "out"] if argv[0] == "report" else ["out"])
    r = subprocess.run([*DD, *argv, str(tmp_path / "r.txt")], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert r.returncode == 0 and r.stdout == "" and (tmp_path / "r.txt").read_text()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    # the temporary name used to be .NAME.PID.tmp: in a shared directory a link there led root's write elsewhere
    victim = tmp_path / "victim"
    victim.write_text("keep")
    out = tmp_path / "r.txt"
    for pid in {os.getpid(), os.getppid()}:
        os.symlink(victim, tmp_path / f".r.txt.{pid}.tmp")
    write_output("report\n", out)
    assert victim.read_text() == "keep" and out.read_text() == "report\n"


def test_a_replaced_file_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path: Path) -> None:
    out = tmp_path / "r.txt"
    out.write_text("old")
    os.chmod(out, 0o640)
    write_output("new\n", out)
    assert (out.stat().st_mode & 0o777) == 0o640
    fresh = tmp_path / "fresh.txt"
    old = os.umask(0o022)
    try:
        write_output("x\n", fresh)
    finally:
        os.umask(old)
    assert (fresh.stat().st_mode & 0o777) == 0o644
