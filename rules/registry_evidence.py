"""What the DD4xx rules share: the skips for "no registry
container here" and "its log is not known" (a rule that reads logs never passes without them)."""

from __future__ import annotations

from dockerdoctor.errors import Skip
from dockerdoctor.facts.registry_containers import RegistryContainer


def need_containers(registry_containers: list[RegistryContainer]) -> None:
    if not registry_containers:
        raise Skip("no registry container on this host")


def need_logs(registry_containers: list[RegistryContainer]) -> None:
    """A rule that reads logs says so when no registry container's log is known (never "passed")."""
    need_containers(registry_containers)
    if not any(rc.container.log_source for rc in registry_containers):
        raise Skip("the registry containers' logs are not known (a sosreport has them only with "
                   "`-k docker.logs=on`)")
