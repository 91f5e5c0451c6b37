"""Docker engine: is dockerd running, and can this user reach it?"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import DaemonJson, DockerdProcess
from dockerdoctor.facts.host import DockerSocket, Journal
from dockerdoctor.facts.systemd import SystemdUnitState, UnitModel
from dockerdoctor.model import Evidence, Finding, Fix, RunCommand, ServiceAction, Severity
from dockerdoctor.rules_support import short

FAILURE = re.compile(
    r"failed to start daemon|unable to configure the Docker daemon|Error starting daemon|unknown flag|"
    r"unknown shorthand flag|no sockets found via socket activation|is not valid: invalid host|"
    r"Failed to start Docker|docker.service: (Main process exited|Failed with result)|"
    r"level=fatal|panic:"
)


@rule("DD501", "docker-not-running", category="engine", severity=Severity.ERROR,
      title="dockerd is not running")
def docker_not_running(dockerd_process: DockerdProcess | None, docker_unit: UnitModel | None = None,
                       systemd_state: SystemdUnitState | None = None, docker_journal: Journal | None = None,
                       daemon_json: DaemonJson | None = None) -> Iterator[Finding]:
    """dockerd (docker.service) is down. The finding quotes the reason from the journal: usually
    a configuration error that another rule names (DD104, DD105, DD106, DD109).

    How to fix: fix the reason the journal names, then `systemctl start docker`; `journalctl -u
    docker -n 50` shows the whole story.

    Example:
        docker.service: Failed with result 'exit-code'.
        unable to configure the Docker daemon with file /etc/docker/daemon.json: EOF
    """
    state = systemd_state.active_state if systemd_state else None
    running = dockerd_process is not None and state not in ("failed",)
    if running:
        return
    if dockerd_process is None and docker_unit is None and systemd_state is None and not (
            daemon_json and daemon_json.exists) and docker_journal is None:
        raise Skip("docker does not seem to be installed here (no unit, no daemon.json, no dockerd process)")
    evidence: list[Evidence] = []
    if systemd_state is not None and state:
        evidence.append(Evidence(systemd_state.source,
                                 f"ActiveState={state} SubState={systemd_state.get('SubState') or '?'}"))
    evidence.append(Evidence("process table", "no dockerd process"))
    reason = ""
    if docker_journal is not None:
        hits = docker_journal.grep(FAILURE)
        specific = [h for h in hits if "Main process exited" not in h[1] and "Failed with result" not in h[1]
                    and "Failed to start Docker" not in h[1]]
        # The same failure repeats at every restart attempt; show each distinct message once (the last).
        distinct: dict[str, tuple[int, str]] = {}
        for lineno, line in specific or hits:
            distinct.pop(line.split("]: ", 1)[-1], None)
            distinct[line.split("]: ", 1)[-1]] = (lineno, line)
        for lineno, line in list(distinct.values())[-3:]:
            evidence.append(Evidence(docker_journal.source, short(line, 300), lineno))
        if specific:
            reason = short(specific[-1][1].split("]: ", 1)[-1], 200)
    yield finding(
        "DD501", "dockerd is not running",
        "docker.service is down" + (f" ({state})" if state else "") + (f": {reason}" if reason else "."),
        evidence=evidence,
        fix=Fix("Fix the cause named in the journal, then start docker",
                (ServiceAction("start"), RunCommand(("journalctl", "-u", "docker", "-n", "50", "--no-pager"),
                                                    "read why it stopped"))),
        params={"reason": reason},
    )


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
        alternatives = (Fix(f"Add {user} to the {group} group (root-equivalent)",
                            (RunCommand(("usermod", "-aG", group, user)),),
                            warnings=(f"Members of the {group} group can become root on this host; "
                                      "add only trusted users, then log in again.",)),)
    reason = (f"{user} is not in that group" if s.gid not in (None, 0)
              else "only root can use it (dockerd's `group` setting, default docker, decides the socket's group)")
    yield finding(
        "DD502", f"{user} cannot use {s.path}",
        f"{s.path} is mode {oct(s.mode or 0)} group {group}, and {reason}.",
        evidence=[Evidence(s.path, f"mode {oct(s.mode or 0)}, group {group}; uid {s.uid}")],
        fix=Fix("Use sudo for docker commands", alternatives=alternatives),
        params={"user": user, "group": group},
    )
