"""Shared pytest setup: the ``real`` marker and the session-scoped real-parts lab (see tests/lab.py).

``@pytest.mark.real`` tests need root and real binaries. Off CI they skip with the reason; when the
environment variable ``CI`` is set they FAIL instead, so a CI run never silently skips them.
Extra binaries a test needs go in the marker: ``@pytest.mark.real("firewalld", "nginx")``.

Fixtures (session-scoped; each real server starts once per session, on first use):

* ``lab_root``  - the session's ``/tmp/dd-lab-*`` work dir (removed at the end).
* ``labnet``    - :class:`lab.LabNet`: ``labnet.srv_ns``/``srv_ip`` (registry host) and ``cli_ns``/``cli_ip``.
* ``certs``     - :class:`LabCerts` for ``labnet.srv_ip``: ``ca_pem``, ``ca_path`` and (crt, key) path pairs
  ``good``, ``cn_only``, ``wrong_name``, ``expired``, ``not_yet_valid``.
* ``dist_registries`` - :class:`LabRegistries` of running ``docker-registry`` servers in ``labnet.srv_ns``:
  ``plain`` (5100), ``tls`` (5101), ``tls_cn_only`` (5102), ``tls_wrong_name`` (5103), ``tls_expired`` (5104),
  ``htpasswd`` (5105, plain HTTP + basic auth, user ``labuser`` / ``labpass``), ``tls_not_yet_valid`` (5106).
* ``client_dockerd_factory`` - ``factory(daemon_json=None, extra_args=(), **kw) -> lab.Dockerd`` started in
  ``labnet.cli_ns`` with its own private /etc/docker. Use ``with factory(...) as d:`` to stop it at once;
  anything still running is stopped at session end. ``client_dockerd`` is the same factory, but
  function-scoped: it stops the daemons of one test when that test ends.
* ``firewalld`` - lazily started :class:`lab.Firewalld` in its OWN pair of namespaces (so it never blocks
  the ``dist_registries``), with ``firewalld.labnet`` and a plain registry ``firewalld.registry`` on
  ``firewalld.labnet.srv_ip:5100`` (closed by the public zone). ``firewalld.reset()`` restores the zone.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402
import netguard  # noqa: E402

ON_CI = bool(os.environ.get("CI"))

# Binaries every real test needs (dockerd starts its own containerd, which runs runc).
BASE_BINARIES = (
    "ip",
    "nsenter",
    "unshare",
    "mount",
    "dockerd",
    "containerd",
    "runc",
    "docker-registry",
    "docker",
)


def real_unavailable(extra: Sequence[str] = ()) -> str | None:
    """Why real tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, mounts, dockerd)"
    missing = lab.missing_binaries(*BASE_BINARIES, *extra)
    # DDLAB_PRETEND_MISSING=bin1,bin2 simulates a machine without them (to check the skip/fail logic).
    pretend = [b for b in os.environ.get("DDLAB_PRETEND_MISSING", "").split(",") if b]
    missing += [b for b in pretend if b in (*BASE_BINARIES, *extra) and b not in missing]
    if missing:
        return f"missing binaries: {', '.join(missing)} (run: sudo bash scripts/install-test-deps.sh)"
    if not Path("/etc/docker").is_dir():
        return "/etc/docker is missing (the mount point for the lab's private /etc/docker; install docker.io)"
    return None


def require_real(*extra: str) -> None:
    """Skip (off CI) or fail (on CI) when the real lab cannot run."""
    why = real_unavailable(extra)
    if why:
        if ON_CI:
            pytest.fail(f"real test cannot run on CI: {why}", pytrace=False)
        pytest.skip(f"real: {why}")


# ---------------------------------------------------------------------------------------------------
# the network guard (tests/netguard.py): no packet from this session leaves the machine

_guard_seen = 0


def pytest_sessionstart(session: pytest.Session) -> None:
    global _guard_seen
    why = netguard.Guard.unavailable()
    if why:
        if ON_CI:
            pytest.exit(f"the network guard cannot run on CI: {why}", returncode=3)
        sys.stderr.write(f"network guard OFF: {why}\n")
        return
    netguard.ACTIVE = netguard.Guard().start()
    _guard_seen = netguard.ACTIVE.strays() or 0


def pytest_report_header(config: pytest.Config) -> list[str]:
    GUARD = netguard.ACTIVE
    if GUARD is None:
        return ["network guard: off"]
    return [f"network guard: table inet {GUARD.name} rejects and counts packets to private and documentation "
            f"ranges from {GUARD.scope}; allowed: {'; '.join(GUARD.exclusions) or 'nothing'}"]


@pytest.fixture(autouse=True)
def _no_stray_packets() -> Iterator[None]:
    """Fail the test whose run (setup, call, teardown) sent a packet off the machine."""
    global _guard_seen
    GUARD = netguard.ACTIVE
    if GUARD is None:
        yield
        return
    ack = GUARD.acknowledged
    yield
    now = GUARD.strays() or 0
    n = now - _guard_seen - (GUARD.acknowledged - ack)
    _guard_seen = now
    if n > 0:
        pytest.fail(f"network guard: this test sent {n} packet(s) from the host namespace to private or "
                    f"documentation addresses (rejected; destinations so far: {', '.join(GUARD.destinations())}). "
                    "Run it inside a lab namespace.", pytrace=False)


# The machine's own configuration of every registry client a fix may edit: no test may change it (the
# simulated hosts edit private copies). Checked around every test, like the network guard.
MACHINE_CONFIG = ("/etc/docker", "/etc/containers", "/etc/containerd", "/etc/firewalld", "/etc/default/docker",
                  "/etc/sysconfig/docker", "/etc/systemd/system/docker.service.d", "/etc/crio", "/etc/rancher")


def _machine_config() -> dict[str, tuple[int, int]]:
    seen: dict[str, tuple[int, int]] = {}
    for top in MACHINE_CONFIG:
        for root, _dirs, files in os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [top])]:
            for name in files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                seen[path] = (st.st_size, st.st_mtime_ns)
    return seen


@pytest.fixture(autouse=True)
def _machine_config_untouched() -> Iterator[None]:
    """Fail the test that changed the machine's own docker/containers/containerd/firewalld configuration."""
    before = _machine_config()
    yield
    after = _machine_config()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        pytest.fail(f"this test changed the machine's own configuration: {', '.join(changed[:5])}"
                    " (a simulated host must edit private copies)", pytrace=False)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    GUARD = netguard.ACTIVE
    if GUARD is None:
        return
    n, where = GUARD.unexpected(), GUARD.destinations()
    GUARD.stop()
    netguard.ACTIVE = None
    if n:
        sys.stderr.write(f"\nnetwork guard: {n} packet(s) from the host namespace to private or documentation "
                         f"addresses were rejected ({', '.join(where)}): the session fails\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real(*binaries): needs root and real dockerd/registry/netns (skips off CI, fails on CI)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    m = item.get_closest_marker("real")
    if m is not None:
        require_real(*m.args)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    # Never skip a real test on CI: whatever skipped it (a fixture, pytest.skip, importorskip) is a failure.
    if ON_CI and rep.skipped and not hasattr(rep, "wasxfail") and item.get_closest_marker("real") is not None:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"real test skipped on CI (CI is set, so this is a failure): {reason}"


# ---------------------------------------------------------------------------------------------------
# session lab


@pytest.fixture(scope="session")
def lab_root() -> Iterator[Path]:
    require_real()
    lab.sweep_stale_labs()
    root = lab.make_workdir("s")
    yield root
    lab.rmtree(root)


_lab_counter = itertools.count()


def _unique_prefix(kind: str) -> str:
    """Namespace prefix unique to this process and lab ("ddl"/"ddf" + pid + counter; never 'ddreg')."""
    for _ in range(100):
        p = f"dd{kind}{os.getpid()}x{next(_lab_counter)}"
        if not any(Path(f"/run/netns/{p}{s}").exists() for s in ("srv", "cli")):
            return p
    raise RuntimeError("no free namespace prefix")


@pytest.fixture(scope="session")
def labnet(lab_root: Path) -> Iterator[lab.LabNet]:
    net = lab.LabNet(_unique_prefix("l"))
    net.record_in(lab_root)
    yield net
    net.close()


LabCerts = lab.LabCerts
make_lab_certs = lab.make_lab_certs


@pytest.fixture(scope="session")
def certs(lab_root: Path, labnet: lab.LabNet) -> LabCerts:
    return make_lab_certs(lab_root / "certs", labnet.srv_ip)


@dataclass
class LabRegistries:
    plain: lab.DistRegistry
    tls: lab.DistRegistry
    tls_cn_only: lab.DistRegistry
    tls_wrong_name: lab.DistRegistry
    tls_expired: lab.DistRegistry
    htpasswd: lab.DistRegistry
    tls_not_yet_valid: lab.DistRegistry
    username: str = "labuser"
    password: str = "labpass"

    def all(self) -> dict[str, lab.DistRegistry]:
        return {k: v for k, v in vars(self).items() if isinstance(v, lab.DistRegistry)}

    def __getitem__(self, name: str) -> lab.DistRegistry:
        return self.all()[name]


REGISTRY_PORTS = {
    "plain": 5100,
    "tls": 5101,
    "tls_cn_only": 5102,
    "tls_wrong_name": 5103,
    "tls_expired": 5104,
    "htpasswd": 5105,
    "tls_not_yet_valid": 5106,
}


@pytest.fixture(scope="session")
def dist_registries(lab_root: Path, labnet: lab.LabNet, certs: LabCerts) -> Iterator[LabRegistries]:
    w = lab_root / "registries"
    htp = lab.write_htpasswd(lab_root / "htpasswd", {"labuser": "labpass"})
    tls_of = {
        "tls": certs.good,
        "tls_cn_only": certs.cn_only,
        "tls_wrong_name": certs.wrong_name,
        "tls_expired": certs.expired,
        "tls_not_yet_valid": certs.not_yet_valid,
    }
    regs: dict[str, lab.DistRegistry] = {}
    try:
        for name, port in REGISTRY_PORTS.items():
            regs[name] = lab.DistRegistry(
                w,
                labnet.srv_ip,
                port,
                netns=labnet.srv_ns,
                tls=tls_of.get(name),
                htpasswd=htp if name == "htpasswd" else None,
                name=name,
            ).start()
        yield LabRegistries(**regs)
    finally:
        for r in regs.values():
            r.stop()


DockerdFactory = Callable[..., lab.Dockerd]


class _DockerdPool:
    """Starts lab dockerds; remembers them so nothing outlives its scope."""

    def __init__(self, root: Path, labnet: lab.LabNet) -> None:
        self.root, self.labnet = root, labnet
        self.started: list[lab.Dockerd] = []
        self._n = itertools.count()

    def __call__(
        self,
        daemon_json: dict | str | None = None,
        extra_args: Sequence[str] = (),
        *,
        must_start: bool = True,
        busybox: bool = False,
        certs_d: dict[str, dict[str, bytes | str]] | None = None,
        config_file: Path | str | None = None,
        labnet: lab.LabNet | None = None,
        netns: str | None = "cli",
        defaults: bool | Sequence[str] = True,
        timeout: float = 15.0,
        start: bool = True,
        cli: str | None = None,
    ) -> lab.Dockerd:
        """Start a dockerd in the client namespace with its own private /etc/docker.

        ``daemon_json``: dict or raw text for /etc/docker/daemon.json (None: no file at all).
        ``must_start=False`` returns a daemon that may have exited (check ``d.running()`` and
        ``d.failure_line()``); otherwise a failed start fails the test with dockerd's reason.
        ``busybox=True`` imports ``lab/busybox:1``. ``netns``: "cli", "srv", None (host) or a name.
        """
        net = labnet or self.labnet
        ns = {"cli": net.cli_ns, "srv": net.srv_ns}.get(netns, netns) if netns else None
        d = lab.Dockerd(
            self.root / f"dockerd-{next(self._n)}",
            netns=ns,
            extra_args=extra_args,
            daemon_json=daemon_json,
            config_file=config_file,
            defaults=defaults,
            certs_d=certs_d,
            cli=cli,
        )
        self.started.append(d)
        if not start:
            return d
        ok = d.start(timeout=timeout)
        if not ok and must_start:
            pytest.fail(f"lab dockerd failed to start: {d.failure_line()}\n{d.log_text()[-3000:]}", pytrace=False)
        if ok and busybox:
            lab.import_busybox(d)
        return d

    def stop_all(self, remove: bool = True) -> None:
        for d in self.started:
            d.stop()
            if remove:
                lab.rmtree(d.workdir)
        self.started.clear()


@pytest.fixture(scope="session")
def client_dockerd_factory(lab_root: Path, labnet: lab.LabNet) -> Iterator[_DockerdPool]:
    pool = _DockerdPool(lab_root, labnet)
    yield pool
    pool.stop_all()


@pytest.fixture
def client_dockerd(client_dockerd_factory: _DockerdPool) -> Iterator[_DockerdPool]:
    """Function-scoped view of the factory: daemons started by one test are stopped when it ends."""
    pool = _DockerdPool(client_dockerd_factory.root, client_dockerd_factory.labnet)
    pool._n = client_dockerd_factory._n
    yield pool
    pool.stop_all()


class LabFirewalld(lab.Firewalld):
    registry: lab.DistRegistry

    def reset(self) -> None:
        """Back to the stock config: restore the copied /etc/firewalld and reload."""
        import shutil

        lab.rmtree(self.etc)
        shutil.copytree("/etc/firewalld", self.etc, symlinks=True)
        r = self.cmd("--reload")
        assert r.returncode == 0, r.stderr


@pytest.fixture(scope="session")
def firewalld(lab_root: Path) -> Iterator[LabFirewalld]:
    require_real("firewalld", "firewall-cmd", "dbus-daemon", "nft")
    net = lab.LabNet(_unique_prefix("f"))
    net.record_in(lab_root)
    fw = None
    reg = None
    try:
        reg = lab.DistRegistry(lab_root / "fw-registries", net.srv_ip, 5100, netns=net.srv_ns, name="fw-plain")
        reg.start()
        fw = LabFirewalld(net, lab_root / "firewalld")
        fw.registry = reg
        yield fw
    finally:
        if fw is not None:
            fw.stop()
        if reg is not None:
            reg.stop()
        net.close()
