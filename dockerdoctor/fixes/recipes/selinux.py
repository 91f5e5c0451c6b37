"""Recipes for SELinux on the registry host: relabel a registry's bind mount, look into a denial, turn
SELinux back on in steps."""

from __future__ import annotations

from dockerdoctor.facts.containers import Mount
from dockerdoctor.facts.registry_containers import RegistryContainer
from dockerdoctor.fixes.recipes.container import docker_run_argv, recreate_ops
from dockerdoctor.model import EnvFileSet, Fix, RunCommand


def relabel_fix(c_rc: RegistryContainer, m: Mount) -> Fix:
    c = c_rc.container
    run = docker_run_argv(c, relabel={m.destination: "Z"})
    semanage = Fix(
        f"Label {m.source} container_file_t with semanage fcontext and restorecon",
        (RunCommand(("semanage", "fcontext", "-a", "-t", "container_file_t", f"{m.source}(/.*)?"),
                    "a permanent labelling rule for the directory"),
         RunCommand(("restorecon", "-Rv", m.source), "apply it to the files there now")),
        warnings=("Use this when several containers share the directory, or it must keep its label "
                  "across relabels and container recreation.",),
    )
    return Fix(
        f"Recreate {c.name} with :Z on {m.source}:{m.destination}",
        recreate_ops(c, run, f"the same container, with {m.source} relabelled for it (:Z)"),
        warnings=(":Z gives the directory a label private to this one container; use :z if another container "
                  "shares it. Never setenforce 0.",),
        alternatives=(semanage,),
    )


def avc_fix(comm: str | None) -> Fix:
    """SELinux denied something, and no bind mount of a registry container is the target: look first."""
    return Fix("Find the file the denial names and label it for the registry",
               (RunCommand(("ausearch", "-m", "avc", "-c", comm or "registry", "-ts", "recent"),
                           "the full denials"),
                RunCommand(("audit2why", "-a"), "why each was denied")),
               warnings=("Never setenforce 0.",))


def selinux_permissive_fix(config_path: str | None) -> Fix:
    """SELinux was turned off: back on in steps, permissive first (SELINUX= in `config_path` when it is set there)."""
    conf = (EnvFileSet(config_path, "SELINUX", "permissive"),) if config_path else ()
    return Fix("Turn SELinux back on in steps (permissive first)", conf,
               warnings=("Never jump from disabled to enforcing without a relabel.",))
