"""The suite's guard: no test sends a packet off the machine.

A lab address (10.2xx.0.x) exists only inside the lab's network namespaces. Used from the host's own
namespace it is routed to the default gateway, off the machine, where a stranger may answer
(/work/shared/lab.md §0). So the whole session runs under an nftables table in the host namespace
that REJECTS and COUNTS every TCP/UDP packet (and ICMP echo) that this session's processes send from
the host namespace to a private, shared, link-local or documentation range; the session fails if the
counter is not zero, and each test fails whose run raised it.

How it stays within the session:

* The table is ``inet ddguard<PID>`` with ``flags owner``: the kernel deletes it when the netlink socket
  that created it closes. That socket belongs to a holder process (``nft -i``, kept reading its stdin)
  started with ``PR_SET_PDEATHSIG``: when pytest dies, even by SIGKILL, the kernel kills the holder and
  drops the table. Names carry pytest's PID, so sessions of several worktrees can run at once.
* Only this session's packets count: pytest moves itself into a cgroup v2 of its own
  (``ddguard-<PID>``, inherited by every child) and the table matches ``socket cgroupv2``. Another
  session's traffic on a shared machine is neither counted nor rejected. Without a usable cgroup v2 the
  table falls back to matching every process, and says so.
* At session start, cgroups and tables of dead sessions are removed (``sweep_stale``).

Namespaced traffic never reaches the host namespace's output hook: a packet sent in a lab namespace
travels its veth pair into the other lab namespace and never crosses the host's netns. Loopback
(``oifname "lo"``, which carries the host's own addresses too) is not matched.

Exclusions, derived from the host's configuration at session start (``Guard.exclusions``):

* DNS (port 53, TCP and UDP) to the resolvers in /etc/resolv.conf: this machine's resolver is in 10/8.
* the HTTP(S) proxy named by the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, lower-case too), when
  it has a private address.

Everything else in the ranges is caught, including 192.0.2.0/24 although this machine's own uplink is
on it: tests and fixtures use 192.0.2.x and 10.0.0.5 as documentation addresses, and a *live* probe to
one of them would go out on eth0.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PRIVATE_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
)
PRIVATE_V6 = ("fc00::/7", "fe80::/10", "2001:db8::/32")
TABLE_PREFIX = "ddguard"
CGROUP_PREFIX = "ddguard-"
PR_SET_PDEATHSIG = 1
ACTIVE: Guard | None = None  # the session's guard (set by tests/conftest.py)


def _nft(*args: str, input: str | None = None, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], input=input, capture_output=True, text=True, timeout=timeout)


def resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    out = []
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"\s*nameserver\s+(\S+)", line)
        if m:
            with contextlib.suppress(ValueError):
                out.append(str(ipaddress.ip_address(m.group(1).split("%")[0])))
    return out


def proxies(env: dict[str, str] | None = None) -> list[tuple[str, int]]:
    import socket

    env = dict(os.environ) if env is None else env
    out: list[tuple[str, int]] = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        v = env.get(name)
        if not v:
            continue
        u = urllib.parse.urlsplit(v if "://" in v else "http://" + v)
        if not u.hostname:
            continue
        try:
            port = u.port or 80
            addrs = {a[4][0] for a in socket.getaddrinfo(u.hostname, port, type=socket.SOCK_STREAM)}
        except (OSError, ValueError):
            continue
        out += [(a, port) for a in sorted(addrs) if (a, port) not in out]
    return out


def _cgroup2_mount() -> str | None:
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split()[4]
    except OSError:
        pass
    return None


def _own_cgroup2() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:] or "/"
    except OSError:
        pass
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale() -> list[str]:
    """Remove the cgroups and tables of guard sessions whose pytest is gone."""
    done = []
    mount = _cgroup2_mount()
    if mount:
        for d in sorted(Path(mount).rglob(f"{CGROUP_PREFIX}*"), key=lambda p: -len(p.parts)):
            pid = d.name[len(CGROUP_PREFIX):]
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    if not (d / "cgroup.procs").read_text().strip():
                        d.rmdir()
                        done.append(str(d))
    r = _nft("-j", "list", "tables")
    if r.returncode == 0:
        for item in json.loads(r.stdout).get("nftables", []):
            t = item.get("table")
            if t and t.get("name", "").startswith(TABLE_PREFIX):
                pid = t["name"][len(TABLE_PREFIX):]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    if _nft("delete", "table", t["family"], t["name"]).returncode == 0:
                        done.append(f"table {t['family']} {t['name']}")
    return done


def _pdeathsig() -> None:  # runs in the holder between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


@dataclass
class Guard:
    name: str = field(default_factory=lambda: f"{TABLE_PREFIX}{os.getpid()}")
    exclusions: list[str] = field(default_factory=list)
    scope: str = ""  # what the table matches: this session's cgroup, or every process
    acknowledged: int = 0  # packets that tests caused on purpose (expect_strays)
    _holder: subprocess.Popen[str] | None = None
    _cgroup: Path | None = None
    _old_cgroup: Path | None = None

    # ------------------------------------------------------------------ setup
    @staticmethod
    def unavailable() -> str | None:
        if os.geteuid() != 0:
            return "needs root (nftables)"
        if _nft("--version").returncode != 0:
            return "the nft command is missing (apt-get install nftables)"
        return None

    def _enter_cgroup(self) -> tuple[str, int] | None:
        """Move this process into a cgroup v2 of its own; (path for nft, level), or None."""
        mount, own = _cgroup2_mount(), _own_cgroup2()
        if not mount or own is None or not mount.startswith("/sys/fs/cgroup"):
            return None  # nft resolves cgroupv2 paths under /sys/fs/cgroup only
        rel = own.strip("/")
        old = Path(mount, rel) if rel else Path(mount)
        cg = old / f"{CGROUP_PREFIX}{os.getpid()}"
        try:
            cg.mkdir(exist_ok=True)
            (cg / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            with contextlib.suppress(OSError):
                cg.rmdir()
            return None
        self._cgroup, self._old_cgroup = cg, old
        level = len([p for p in (rel + "/" + cg.name).split("/") if p])
        return os.path.relpath(cg, "/sys/fs/cgroup"), level

    def ruleset(self, cgroup: tuple[str, int] | None) -> str:
        v4 = [r for r in resolvers() if ipaddress.ip_address(r).version == 4]
        v6 = [r for r in resolvers() if ipaddress.ip_address(r).version == 6]
        lines = [f"table inet {self.name} {{", "  flags owner", "  counter strays {}",
                 "  set seen4 { type ipv4_addr . inet_service; flags dynamic; size 4096; }",
                 "  set seen6 { type ipv6_addr . inet_service; flags dynamic; size 4096; }",
                 "  chain check {"]
        self.exclusions = []
        if v4:
            lines.append(f"    ip daddr {{ {', '.join(v4)} }} meta l4proto {{ tcp, udp }} th dport 53 accept")
        if v6:
            lines.append(f"    ip6 daddr {{ {', '.join(v6)} }} meta l4proto {{ tcp, udp }} th dport 53 accept")
        self.exclusions += [f"DNS to {r} (/etc/resolv.conf)" for r in v4 + v6]
        for addr, port in proxies():
            fam = "ip" if ipaddress.ip_address(addr).version == 4 else "ip6"
            lines.append(f"    {fam} daddr {addr} tcp dport {port} accept")
            self.exclusions.append(f"the proxy {addr}:{port} (environment)")
        p4, p6 = ", ".join(PRIVATE_V4), ", ".join(PRIVATE_V6)
        reject = "counter name strays reject with icmpx admin-prohibited"
        lines += [
            f"    ip daddr {{ {p4} }} meta l4proto {{ tcp, udp }} add @seen4 {{ ip daddr . th dport }} {reject}",
            f"    ip6 daddr {{ {p6} }} meta l4proto {{ tcp, udp }} add @seen6 {{ ip6 daddr . th dport }} {reject}",
            f"    ip daddr {{ {p4} }} icmp type echo-request {reject}",
            f"    ip6 daddr {{ {p6} }} icmpv6 type echo-request {reject}",
            "  }",
            "  chain out {",
            "    type filter hook output priority -10; policy accept;",
            '    oifname "lo" accept',
        ]
        if cgroup is not None:
            lines.append(f'    socket cgroupv2 level {cgroup[1]} "{cgroup[0]}" jump check')
            self.scope = f"processes in cgroup {self._cgroup} (this pytest and its children)"
        else:
            lines.append("    jump check")
            self.scope = "every process on this host (no usable cgroup v2)"
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def start(self) -> Guard:
        sweep_stale()
        cg = self._enter_cgroup()
        text = self.ruleset(cg)
        check = _nft("-c", "-f", "-", input=text)
        if check.returncode != 0:
            self._leave_cgroup()
            raise RuntimeError(f"the guard's ruleset does not load: {check.stderr.strip()}\n{text}")
        path = Path(f"/run/{self.name}.nft")
        path.write_text(text)
        try:
            self._holder = subprocess.Popen(["nft", "-i"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, text=True, preexec_fn=_pdeathsig)
            assert self._holder.stdin is not None
            self._holder.stdin.write(f'include "{path}"\n')
            self._holder.stdin.flush()
            end = time.monotonic() + 10
            while self.strays() is None:
                if time.monotonic() > end or self._holder.poll() is not None:
                    raise RuntimeError(f"the guard table {self.name} did not appear")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        finally:
            path.unlink(missing_ok=True)
        return self

    # ------------------------------------------------------------------ reading
    def strays(self) -> int | None:
        """Packets rejected so far (None: the table is gone)."""
        r = _nft("-j", "list", "counter", "inet", self.name, "strays")
        if r.returncode != 0:
            return None
        for item in json.loads(r.stdout).get("nftables", []):
            if "counter" in item:
                return int(item["counter"]["packets"])
        return None

    def unexpected(self) -> int:
        return max(0, (self.strays() or 0) - self.acknowledged)

    def destinations(self) -> list[str]:
        out = []
        for s in ("seen4", "seen6"):
            r = _nft("-j", "list", "set", "inet", self.name, s)
            if r.returncode != 0:
                continue
            for item in json.loads(r.stdout).get("nftables", []):
                for el in (item.get("set") or {}).get("elem", []):
                    val = el.get("elem", {}).get("val", el) if isinstance(el, dict) else el
                    concat = val.get("concat") if isinstance(val, dict) else None
                    if concat:
                        host = concat[0]
                        out.append(f"[{host}]:{concat[1]}" if ":" in str(host) else f"{host}:{concat[1]}")
        return sorted(set(out))

    @contextlib.contextmanager
    def expect_strays(self) -> Iterator[list[int]]:
        """For a test that sends stray packets on purpose: yields [count], filled in on exit."""
        before = self.strays() or 0
        box: list[int] = []
        try:
            yield box
        finally:
            n = (self.strays() or 0) - before
            self.acknowledged += n
            box.append(n)

    # ------------------------------------------------------------------ teardown
    def _leave_cgroup(self) -> None:
        if self._cgroup is None or self._old_cgroup is None:
            return
        with contextlib.suppress(OSError):
            (self._old_cgroup / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):
            self._cgroup.rmdir()  # fails only while a leaked child still runs in it: swept next time
        self._cgroup = None

    def stop(self) -> None:
        if self._holder is not None:
            with contextlib.suppress(OSError, ValueError):
                if self._holder.stdin:
                    self._holder.stdin.close()
            try:
                self._holder.wait(5)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()
            self._holder = None
        self._leave_cgroup()
