#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dockerdoctor developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fix
short_description: Repair why a docker host cannot push to or pull from a private registry, safely
version_added: "0.1.0"
description:
  - Runs C(dockerdoctor fix) on the managed host. In check mode it only plans (C(dockerdoctor fix), which changes
    nothing) and reports whether the plan would change the host; with C(--diff) Ansible shows each file's diff.
  - Otherwise it applies the plan as C(dockerdoctor fix --apply --yes) does, as one transaction. Every file it
    changes is backed up first (C(backup_file), C(backups)), written atomically with its mode, owner and SELinux
    label kept, the candidate configuration is validated before dockerd is reloaded or restarted (the fewest
    services), and the result is verified by rerunning the rules and having dockerd reach the registry.
  - If dockerd does not come back or the verification fails, the files are restored byte-identical, the service is
    reloaded or restarted again, and the task fails with C(rolled_back=true) and C(changed=false).
  - A second run right after a successful one has nothing to do and returns C(changed=false).
  - Only findings with an automatic fix are applied; the others are listed in C(manual). Options mirror the long
    options of C(dockerdoctor fix).
options:
  only:
    description:
      - Limit the plan to these rules, as ids or prefixes (the CLI's C(--only)).
    type: list
    elements: str
    default: []
  ca:
    description:
      - A file on the managed host with the registry's CA certificate (PEM), installed as
        C(/etc/docker/certs.d/HOST:PORT/ca.crt), the TLS fix that needs no restart (the CLI's C(--ca)).
    type: path
  insecure:
    description:
      - Choose the insecure-registries alternative for untrusted registries (the CLI's C(--insecure)). It turns off
        TLS for that registry on the host (CIS Docker Benchmark 2.4); prefer O(ca).
      - Without O(ca), a registry that speaks plain HTTP gets insecure-registries anyway, with that warning.
    type: bool
    default: false
  state_dir:
    description:
      - Where the backups and their manifests live (the CLI's C(--state-dir)).
    type: path
    default: /var/lib/dockerdoctor
  restart_command:
    description:
      - How to restart dockerd on a host without systemd, run with C(sh -c); reload is then SIGHUP to dockerd's PID
        (the CLI's C(--restart-command)). With systemd, dockerdoctor uses it over D-Bus or C(systemctl).
    type: str
extends_documentation_fragment:
  - dockerdoctor.registry.common
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - O(root) applies file edits to that snapshot (use a copy) and never runs commands or services.
  - A run that was interrupted after its backups makes the next run fail with the run id to roll back
    (C(dockerdoctor fix --rollback RUN-ID)).
seealso:
  - module: dockerdoctor.registry.check
author:
  - dockerdoctor developers
"""

EXAMPLES = r"""
- name: Show what would change (run with --check --diff)
  dockerdoctor.registry.fix:
    registry: ["10.0.0.5:5000"]
  check_mode: true
  diff: true

- name: Trust the registry's CA (TLS, no restart)
  dockerdoctor.registry.fix:
    registry: ["registry.example.com:5443"]
    ca: /etc/pki/ca-trust/source/anchors/registry-ca.crt

- name: Repair and keep the backup's path
  dockerdoctor.registry.fix:
    registry: ["10.0.0.5:5000"]
  register: repaired

- name: Where the old daemon.json went
  ansible.builtin.debug:
    var: repaired.backup_file
  when: repaired is changed
"""

RETURN = r"""
changed:
  description: Whether the host was changed (check mode, whether it would be).
  returned: always
  type: bool
status:
  description: What happened (C(planned) in check mode, else the CLI's status).
  returned: always
  type: str
  choices: [planned, nothing, applied, invalid, rolled-back, failed]
diff:
  description: Per changed file, its content before and after (shown with C(--diff)).
  returned: when a file changes, or would in check mode
  type: list
  elements: dict
backup_file:
  description: The backup of the first file that existed before the change (a copy of the original bytes).
  returned: when applied and a changed file existed before
  type: str
  sample: /var/lib/dockerdoctor/backups/20261202T101500Z-1a2b/files/0
backups:
  description: Per changed file, its path and the copy of its original (null for a file that did not exist).
  returned: when applied
  type: list
  elements: dict
  sample: [{"path": "/etc/docker/daemon.json", "backup": "/var/lib/dockerdoctor/backups/20261202T101500Z-1a2b/files/0"}]
backup_dir:
  description: The run's directory under O(state_dir), with manifest.json.
  returned: when applied
  type: str
run_id:
  description: The run's id; C(dockerdoctor fix --rollback RUN-ID) undoes it.
  returned: when applied, rolled back or failed
  type: str
rolled_back:
  description: Whether the change was undone after a failure.
  returned: always
  type: bool
steps:
  description: The plan, one entry per finding with a fix (rule id, title, summary, commands).
  returned: always
  type: list
  elements: dict
manual:
  description: Findings without an automatic fix, with what to do by hand.
  returned: in check mode
  type: list
  elements: dict
service:
  description: The reload or restart the plan needs (C(action) reload, restart, start or null; C(daemon_reload)).
  returned: always
  type: dict
log:
  description: What the transaction did, step by step.
  returned: when applied, rolled back or failed
  type: list
  elements: str
problems:
  description: Why the plan was not applied (validation), or why verification failed.
  returned: when not applied
  type: list
  elements: str
cmd:
  description: The command that ran.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dockerdoctor.registry.plugins.module_utils.dockerdoctor import (
    COMMON_ARGUMENT_SPEC,
    common_argv,
    file_diffs,
    find_executable,
    last_line,
    parse_json,
    run,
)


def _steps(plan):
    return [{"id": s.get("id"), "title": s.get("title"), "summary": (s.get("fix") or {}).get("summary"),
             "commands": s.get("commands", []), "errors": s.get("errors", [])} for s in plan.get("steps", [])]


def main():
    argument_spec = dict(COMMON_ARGUMENT_SPEC)
    argument_spec.update(
        only=dict(type="list", elements="str", default=[]),
        ca=dict(type="path"),
        insecure=dict(type="bool", default=False),
        state_dir=dict(type="path", default="/var/lib/dockerdoctor"),
        restart_command=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    exe = find_executable(module)
    argv = [exe, "fix", "--format", "json", "--state-dir", p["state_dir"]] + common_argv(p)
    if p["only"]:
        argv += ["--only", ",".join(p["only"])]
    if p["ca"]:
        argv += ["--ca", p["ca"]]
    if p["insecure"]:
        argv.append("--insecure")
    if p["restart_command"]:
        argv += ["--restart-command", p["restart_command"]]

    # The plan first, in both modes: check mode stops here; it also gives the steps of an apply.
    rc, out, err = run(module, argv)
    if rc != 0:
        module.fail_json(msg=last_line(err) or "dockerdoctor fix failed with exit code %d" % rc, rc=rc, cmd=argv,
                         stderr=err, changed=False, rolled_back=False)
    plan = parse_json(module, out, rc, err, argv)
    steps = _steps(plan)
    if module.check_mode:
        module.exit_json(changed=bool(plan.get("changed")), status="planned", diff=file_diffs(plan.get("files")),
                         steps=steps, manual=plan.get("manual", []), service=plan.get("service") or {},
                         rolled_back=False, cmd=argv,
                         msg="would change %d file(s)" % len(plan.get("files") or []) if plan.get("changed")
                         else "nothing to change")

    apply_argv = argv + ["--apply", "--yes"]
    rc, out, err = run(module, apply_argv)
    if not out.strip():
        module.fail_json(msg=last_line(err) or "dockerdoctor fix --apply failed with exit code %d" % rc, rc=rc,
                         cmd=apply_argv, stderr=err, changed=False, rolled_back=False, steps=steps)
    res = parse_json(module, out, rc, err, apply_argv)
    status = res.get("status")
    backups = res.get("backups") or []
    result = dict(
        status=status,
        run_id=res.get("run_id"),
        log=res.get("log", []),
        problems=res.get("problems", []),
        steps=steps,
        service=res.get("service") or plan.get("service") or {},
        backups=backups,
        backup_dir=res.get("backup_dir"),
        cmd=apply_argv,
        rolled_back=status == "rolled-back",
    )
    first = next((b["backup"] for b in backups if b.get("backup")), None)
    if first:
        result["backup_file"] = first
    if status == "nothing":
        module.exit_json(changed=False, msg="nothing to do", **result)
    if status == "applied":
        module.exit_json(changed=True, diff=file_diffs(res.get("files")),
                         msg="applied and verified: %s" % "; ".join("%s %s" % (s["id"], s["summary"]) for s in steps),
                         **result)
    if status == "invalid":
        module.fail_json(changed=False, msg="not applied, the candidate configuration is invalid: %s"
                         % "; ".join(result["problems"]), **result)
    if status == "rolled-back":
        why = "; ".join(result["problems"]) or last_line("\n".join(result["log"]))
        module.fail_json(changed=False, msg="applied, then rolled back: %s" % why, **result)
    module.fail_json(changed=True, msg="the change failed and was not fully undone: run "
                     "`dockerdoctor fix --rollback %s` on the host (%s)"
                     % (result["run_id"], last_line("\n".join(result["log"]))), **result)


if __name__ == "__main__":
    main()
