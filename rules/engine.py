"""Docker engine: is dockerd running, and can this user reach it?"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import DaemonJson, DockerdProcess
from dockerdoctor.facts.dockerhost import DockerHost, EngineAnswer, OtherDockerd
from dockerdoctor.facts.host import DockerSocket, Journal
from dockerdoctor.facts.systemd import SystemdUnitState, UnitModel
from dockerdoctor.fixes.recipes.daemon import docker_group_fix
from dockerdoctor.model import Evidence, Finding, Fix, RunCommand, ServiceAction, Severity
from dockerdoctor.safetext import short

FAILURE = re.compile(
    r"failed to start daemon|unable to configure the Docker daemon|Error starting daemon|unknown flag|"
    r"unknown shorthand flag|no sockets found via socket activation|is not valid: invalid host|"
    r"Failed to start Docker|docker.service: (Main process exited|Failed with result)|"
    r"level=fatal|panic:"
)


_NO_ANSWER = {
    "absent": "{path} does not exist",
    "refused": "{path} exists, but nothing listens on it (connection refused)",
    "not a socket": "{path} is not a socket",
    "timeout": "the listener on {path} accepted the connection but did not answer",
    "no Engine API": "the listener on {path} is not a Docker Engine",
}


@rule("DD501", "docker-not-running", category="engine", severity=Severity.ERROR,
      title="dockerd is not running")
def docker_not_running(docker_host: DockerHost, dockerd_process: DockerdProcess | None = None,
                       engine_answer: EngineAnswer | None = None, docker_unit: UnitModel | None = None,
                       systemd_state: SystemdUnitState | None = None, docker_journal: Journal | None = None,
                       daemon_json: DaemonJson | None = None, other_dockerds: list[OtherDockerd] | None = None,
                       runtimes: list | None = None) -> Iterator[Finding]:
    """No Docker Engine answers on the socket this run inspects: --docker-host, else DOCKER_HOST,
    else the current docker context, else /var/run/docker.sock. Live, the socket itself is asked
    (other dockerds serving other sockets do not count, and are listed as information); a snapshot
    has only its process list. When docker.service is down, the finding quotes the journal's reason:
    usually a configuration error that another rule names (DD104, DD105, DD106, DD109).

    How to fix: fix the reason the journal names, then `systemctl start docker` (`journalctl -u docker
    -n 50` shows the whole story); on a host without systemd, start dockerd the way that host starts
    services. If you meant another daemon, name its socket with --docker-host.

    Not applicable (skipped) where docker is not installed: no docker unit, journal, socket or dockerd, as on
    a Kubernetes node on containerd or CRI-O, a k3s node or a podman host; a daemon.json left from before
    does not make it one.

    Example:
        docker.service: Failed with result 'exit-code'.
        unable to configure the Docker daemon with file /etc/docker/daemon.json: EOF
    """
    host = docker_host
    state = systemd_state.active_state if systemd_state else None
    if engine_answer is not None:  # live: the socket answered, or said why not
        if engine_answer.answered:
            return
        if engine_answer.why == "permission denied":
            raise Skip(f"{host.url}: permission denied, so whether a daemon answers is unknown (see DD502)")
        if host.remote:
            yield _remote_down(host, engine_answer)
            return
        seen = _NO_ANSWER.get(engine_answer.why, "{path}: " + (engine_answer.detail or engine_answer.why))
        seen = seen.format(path=host.path)
        running = False
    else:  # a snapshot: its process list
        running = dockerd_process is not None and state not in ("failed",)
        if running:
            return
        seen = f"no dockerd in the process list serves {host.url}"
    others = [o for o in other_dockerds or [] if o.pid != (dockerd_process.pid if dockerd_process else None)]
    unit_matters = host.is_default and (docker_unit is not None or systemd_state is not None)
    _skip_without_docker(host, unit_matters, others, docker_journal, daemon_json,
                         engine_answer is None or seen.endswith("does not exist"), runtimes)
    if engine_answer is None and dockerd_process is None and other_dockerds is None:  # a snapshot without ps
        if state not in ("failed", "inactive"):
            raise Skip("the snapshot has no process list (sos_commands/process/ps_auxwww) and no docker.service "
                       "state, so whether dockerd ran is unknown")
        seen = f"systemd says docker.service is {state} (the snapshot has no process list)"
    yield _local_down(host, seen, engine_answer, systemd_state if unit_matters else None,
                      docker_journal if unit_matters else None, others, unit_matters)


def _local_down(host: DockerHost, seen: str, engine_answer: EngineAnswer | None, unit_state: SystemdUnitState | None,
                journal: Journal | None, others: list[OtherDockerd], unit_matters: bool) -> Finding:
    """Nothing serves this host's socket: what was seen, docker.service's state and the journal's reason
    (`unit_state` and `journal` only when the unit is this socket's), and the other dockerds."""
    state = unit_state.active_state if unit_state else None
    evidence: list[Evidence] = [Evidence(engine_answer.source if engine_answer else "process table", seen)]
    if unit_state is not None and state:
        evidence.append(unit_state.evidence(f"ActiveState={state} SubState={unit_state.get('SubState') or '?'}"))
    reason = _journal_reason(journal, evidence) if journal is not None else ""
    evidence += _others_evidence(host, others)
    message = f"Nothing answers on {host.url} ({host.chosen_by}): {seen}."
    if unit_state is not None:
        message += " docker.service is " + (state or "not running") + (f": {reason}" if reason else ".")
    return finding(
        "DD501", f"No Docker daemon answers on {host.url}", message,
        evidence=evidence, fix=_start_fix(host, unit_matters, unit_state is not None, reason),
        params={"reason": reason, "socket": host.url, "why": engine_answer.why if engine_answer else "not running"},
    )


def _skip_without_docker(host: DockerHost, unit_matters: bool, others: list[OtherDockerd], journal: Journal | None,
                         daemon_json: DaemonJson | None, no_socket: bool, runtimes: list | None) -> None:
    """Skip where docker is not installed: nothing of it but perhaps a daemon.json (or only users' rootless
    dockerds, on their own sockets), and (for that case) another client of the registry pulls on this host."""
    rootless = [o for o in others if o.rootless]
    if unit_matters or host.chosen_by != "default" or len(rootless) < len(others) or journal is not None \
            or not no_socket:
        return
    pullers = sorted({getattr(r, "display", "?") for r in runtimes or [] if not getattr(r, "name", "").startswith(
        "dockerd")})
    through = f"; this host pulls through {', '.join(pullers)}" if pullers else ""
    if rootless:
        through += "; " + "; ".join(o.describe() for o in rootless) + " (check it as that user, or with --docker-host)"
    if not (daemon_json and daemon_json.exists):
        raise Skip(f"docker does not seem to be installed here (no unit, no daemon.json, no socket, no "
                   f"{'system ' if rootless else ''}dockerd){through}")
    if pullers:
        raise Skip(f"not applicable: no docker unit, journal, socket or dockerd here, only {daemon_json.path}"
                   f"{through}")


def _remote_down(host: DockerHost, engine_answer: EngineAnswer) -> Finding:
    return finding(
        "DD501", f"No Docker Engine answers at {host.url}",
        f"The daemon at {host.url} ({host.chosen_by}) did not answer: {engine_answer.detail}. It is not "
        "a local socket, so this host's unit, journal and daemon.json are not taken as its own.",
        evidence=[engine_answer.evidence()],
        fix=Fix(f"Check that the daemon at {host.url} runs and that this host may reach it, or name "
                "another daemon with --docker-host"),
        params={"socket": host.url, "why": engine_answer.why, "reason": ""},
    )


def _others_evidence(host: DockerHost, others: list[OtherDockerd]) -> list[Evidence]:
    """Other dockerds on this host, for information (with the --docker-host that inspects each)."""
    out = []
    for o in others:
        hint = next((f"; --docker-host {s} inspects it" for s in o.reachable or []), "")
        out.append(o.evidence(f"info: {o.describe()}, not {host.url}{hint}"))
    return out


def _journal_reason(journal: Journal, evidence: list[Evidence]) -> str:
    """The journal's last specific failure line (each distinct message once), added as evidence."""
    hits = journal.grep(FAILURE)
    specific = [h for h in hits if "Main process exited" not in h[1] and "Failed with result" not in h[1]
                and "Failed to start Docker" not in h[1]]
    # The same failure repeats at every restart attempt; show each distinct message once (the last).
    distinct: dict[str, tuple[int, str]] = {}
    for lineno, line in specific or hits:
        distinct.pop(line.split("]: ", 1)[-1], None)
        distinct[line.split("]: ", 1)[-1]] = (lineno, line)
    for lineno, line in list(distinct.values())[-3:]:
        evidence.append(journal.evidence(short(line, 300), lineno))
    return short(specific[-1][1].split("]: ", 1)[-1], 200) if specific else ""


def _start_fix(host: DockerHost, unit_matters: bool, systemd: bool, reason: str) -> Fix:
    if unit_matters and systemd:
        read = RunCommand(("journalctl", "-u", "docker", "-n", "50", "--no-pager"), "read why it stopped")
        if reason:
            return Fix("Fix the cause named in the journal, then start docker", (ServiceAction("start"), read))
        return Fix("Start docker", (ServiceAction("start"), read))
    if host.is_default:
        return Fix("Start dockerd the way this host starts services (there is no systemd here), for example "
                   "`service docker start`; `dockerd` run in the foreground prints why it stops")
    return Fix(f"Start the daemon that should serve {host.path}, or name the socket of a running one with "
               "--docker-host")


@rule("DD502", "docker-socket-denied", category="engine", severity=Severity.ERROR,
      title="This user cannot reach the docker socket", live_only=True)
def docker_socket_denied(docker_socket: DockerSocket) -> Iterator[Finding]:
    """The docker CLI cannot open /var/run/docker.sock: `Got permission denied while trying to
    connect to the Docker daemon socket at unix:///var/run/docker.sock`.

    How to fix: run the command with sudo. Adding the user to the `docker` group also works but
    makes that user root-equivalent on this host; do it only for trusted users.

    Example:
        permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock
    """
    s = docker_socket
    if not s.exists:
        raise Skip(f"{s.path} does not exist (see DD501)")
    if s.accessible:
        return
    import grp
    import pwd

    try:
        user = pwd.getpwuid(s.uid).pw_name
    except KeyError:
        user = str(s.uid)
    try:
        group = grp.getgrgid(s.gid).gr_name if s.gid is not None else "docker"
    except KeyError:
        group = str(s.gid)
    alternatives: tuple[Fix, ...] = ()
    if s.gid not in (None, 0):
        alternatives = (docker_group_fix(user, group),)
    reason = (f"{user} is not in that group" if s.gid not in (None, 0)
              else "only root can use it (dockerd's `group` setting, default docker, decides the socket's group)")
    yield finding(
        "DD502", f"{user} cannot use {s.path}",
        f"{s.path} is mode {oct(s.mode or 0)} group {group}, and {reason}.",
        evidence=[s.evidence(f"mode {oct(s.mode or 0)}, group {group}; uid {s.uid}")],
        fix=Fix("Use sudo for docker commands", alternatives=alternatives),
        params={"user": user, "group": group},
    )
