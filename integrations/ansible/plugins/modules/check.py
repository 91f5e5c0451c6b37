#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dockerdoctor developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: check
short_description: Find why a docker host cannot push to or pull from a private registry
version_added: "0.1.0"
description:
  - Runs C(dockerdoctor check) on the managed host and returns its report as the fact C(ansible_facts.dockerdoctor)
    (the JSON of C(dockerdoctor check --format json), schema 1).
  - Fails the task when there are findings at or above O(fail_on) (default C(error)), like the CLI's exit code 1.
    A host that fails this way still has its report in the registered result.
  - Never changes the host's configuration, so it always returns C(changed=false). It runs in check mode too;
    there it writes neither O(output) nor O(textfile_dir) and does not run the O(e2e) push.
  - Options mirror the long options of C(dockerdoctor check).
options:
  select:
    description:
      - Run only these rules, as ids, prefixes such as C(DD1), or C(all) (the CLI's C(--select)).
    type: list
    elements: str
    default: []
  ignore:
    description:
      - Rules whose errors are reported as warnings (the CLI's C(--ignore)).
    type: list
    elements: str
    default: []
  fail_on:
    description:
      - Lowest severity that fails the task (the CLI's C(--fail-on)). V(never) never fails it for findings.
    type: str
    choices: [error, warning, info, never]
    default: error
  e2e:
    description:
      - Also push, pull back and delete a tiny probe image under O(e2e_repo) (the CLI's C(--e2e)). Not in check mode.
    type: bool
    default: false
  e2e_repo:
    description:
      - Repository the O(e2e) probe writes to (the CLI's C(--e2e-repo)).
    type: str
    default: dockerdoctor-probe
  output:
    description:
      - Also keep the JSON report in this file on the managed host (the CLI's C(--output); written atomically).
        C(dockerdoctor report) merges such files, or the saved results of this module, into a fleet view.
    type: path
  textfile_dir:
    description:
      - Also write the metrics to C(DIR/dockerdoctor.prom) for node_exporter's textfile collector
        (the CLI's C(--textfile-dir); written atomically).
    type: path
extends_documentation_fragment:
  - dockerdoctor.registry.common
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
notes:
  - Exit codes of the CLI map to the result as follows. 0 and 1 give a report (1 fails the task); 2, a usage or input
    error, fails with the CLI's one-line message; 3, a rule crashed, fails and still returns the report.
seealso:
  - module: dockerdoctor.registry.fix
author:
  - dockerdoctor developers
"""

EXAMPLES = r"""
- name: Diagnose every host against the registry, whatever it finds
  dockerdoctor.registry.check:
    registry:
      - registry.example.com:5000
    fail_on: never
    output: /var/tmp/dockerdoctor.json

- name: Show each host's error count
  ansible.builtin.debug:
    msg: "{{ ansible_facts.dockerdoctor.summary.errors }} errors"

- name: Gate a deployment on a clean host (fails on any error finding)
  dockerdoctor.registry.check:
    registry: ["10.0.0.5:5000"]
    select: [DD1, DD2]

- name: Refresh the node_exporter metrics, no matter what the check finds
  dockerdoctor.registry.check:
    fail_on: never
    textfile_dir: /var/lib/prometheus/node-exporter
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: when the CLI produced a report
  type: dict
  contains:
    dockerdoctor:
      description: The report, exactly as C(dockerdoctor check --format json) prints it (docs/report-schema.json).
      type: dict
      sample: {"schema_version": 1, "host": {"name": "web01"}, "summary": {"errors": 1, "warnings": 0}}
summary:
  description: Counts of findings by severity and of rules by status.
  returned: when the CLI produced a report
  type: dict
  sample: {"errors": 1, "warnings": 0, "info": 0, "rules_passed": 30, "rules_failed": 1, "rules_skipped": 12}
findings:
  description: The findings in short, worst first.
  returned: when the CLI produced a report
  type: list
  elements: dict
  sample: [{"id": "DD101", "severity": "error", "title": "10.0.0.5:5000 is not trusted by the daemon",
            "registry": "10.0.0.5:5000"}]
exit_code:
  description: The CLI's exit code (0 nothing at or above fail_on, 1 findings at or above it, 3 a rule crashed).
  returned: always
  type: int
  sample: 1
host:
  description: The host's name as dockerdoctor saw it.
  returned: when the CLI produced a report
  type: str
  sample: web01
cmd:
  description: The command that ran.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dockerdoctor.registry.plugins.module_utils.dockerdoctor import (
    COMMON_ARGUMENT_SPEC,
    common_argv,
    find_executable,
    last_line,
    parse_json,
    run,
)


def _short(report):
    out = []
    for f in report.get("findings", []):
        params = f.get("params") or {}
        out.append({"id": f.get("id"), "severity": f.get("severity"), "title": f.get("title"),
                    "registry": params.get("registry")})
    return out


def main():
    argument_spec = dict(COMMON_ARGUMENT_SPEC)
    argument_spec.update(
        select=dict(type="list", elements="str", default=[]),
        ignore=dict(type="list", elements="str", default=[]),
        fail_on=dict(type="str", choices=["error", "warning", "info", "never"], default="error"),
        e2e=dict(type="bool", default=False),
        e2e_repo=dict(type="str", default="dockerdoctor-probe"),
        output=dict(type="path"),
        textfile_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    exe = find_executable(module)
    argv = [exe, "check", "--format", "json", "--fail-on", p["fail_on"]] + common_argv(p)
    if p["select"]:
        argv += ["--select", ",".join(p["select"])]
    if p["ignore"]:
        argv += ["--ignore", ",".join(p["ignore"])]
    if not module.check_mode:
        if p["e2e"]:
            argv += ["--e2e", "--e2e-repo", p["e2e_repo"]]
        if p["output"]:
            argv += ["--output", p["output"]]
        if p["textfile_dir"]:
            argv += ["--textfile-dir", p["textfile_dir"]]
    rc, out, err = run(module, argv)
    if not out.strip() and "--output" in argv and os.path.isfile(p["output"]):
        with open(p["output"]) as fh:  # with --output the CLI writes the report there, not to stdout
            out = fh.read()
    if rc not in (0, 1, 3):
        module.fail_json(msg=last_line(err) or "dockerdoctor check failed with exit code %d" % rc, rc=rc,
                         exit_code=rc, cmd=argv, stderr=err)
    report = parse_json(module, out, rc, err, argv)
    summary = report.get("summary") or {}
    findings = _short(report)
    result = dict(
        changed=False,
        ansible_facts=dict(dockerdoctor=report),
        summary=summary,
        findings=findings,
        exit_code=rc,
        host=(report.get("host") or {}).get("name", ""),
        cmd=argv,
    )
    counts = "%d errors, %d warnings, %d info" % (summary.get("errors", 0), summary.get("warnings", 0),
                                                    summary.get("info", 0))
    if rc == 3:
        crashed = [r["id"] for r in report.get("rules", []) if r.get("status") == "crashed"]
        module.fail_json(msg="dockerdoctor rules crashed: %s (%s)" % (", ".join(crashed), counts), **result)
    if rc == 1:
        sev = {"error": 3, "warning": 2, "info": 1}
        floor = sev.get(p["fail_on"], 3)
        bad = [f for f in findings if sev.get(f["severity"], 0) >= floor]
        listed = "; ".join("%s %s" % (f["id"], f["title"]) for f in bad[:5])
        more = " (+%d more)" % (len(bad) - 5) if len(bad) > 5 else ""
        module.fail_json(msg="%d finding(s) at or above %s: %s%s" % (len(bad), p["fail_on"], listed, more), **result)
    result["msg"] = "no findings at or above %s (%s)" % (p["fail_on"], counts) if p["fail_on"] != "never" else counts
    module.exit_json(**result)


if __name__ == "__main__":
    main()
