# -*- coding: utf-8 -*-
# Copyright: dockerdoctor developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What dockerdoctor.registry.check and .fix share: finding the program, the common options, running it.

The modules run the dockerdoctor CLI on the managed host and read its JSON (the same contract as
`dockerdoctor check --format json` and `fix --format json`), so they need no Python package of
their own and work with any Python that runs Ansible modules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

DEFAULT_EXECUTABLE = "/opt/dockerdoctor/bin/dockerdoctor"

COMMON_ARGUMENT_SPEC = dict(
    registry=dict(type="list", elements="str", default=[]),
    root=dict(type="path"),
    timeout=dict(type="float", default=2.0),
    docker_host=dict(type="str"),
    executable=dict(type="path"),
)

CHECK_EXIT_CODES = {0: "nothing at or above fail_on", 1: "findings at or above fail_on", 2: "usage or input error",
                    3: "a rule crashed"}


def find_executable(module):
    exe = module.params.get("executable")
    if exe:
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            module.fail_json(msg="executable %s is not an executable file on this host" % exe)
        return exe
    if os.path.isfile(DEFAULT_EXECUTABLE) and os.access(DEFAULT_EXECUTABLE, os.X_OK):
        return DEFAULT_EXECUTABLE
    found = module.get_bin_path("dockerdoctor")
    if not found:
        module.fail_json(msg="dockerdoctor is not installed on this host: apply the role "
                             "dockerdoctor.registry.install, or set executable")
    return found


def common_argv(params):
    argv = []
    for reg in params.get("registry") or []:
        argv += ["--registry", reg]
    if params.get("root"):
        argv += ["--root", params["root"]]
    argv += ["--timeout", "%g" % params["timeout"]]
    if params.get("docker_host"):
        argv += ["--docker-host", params["docker_host"]]
    return argv


def run(module, argv):
    """Run dockerdoctor; returns (rc, stdout, stderr). No colour, no terminal, a stable locale."""
    return module.run_command(argv, environ_update={"NO_COLOR": "1", "LC_ALL": "C.UTF-8", "COLUMNS": "120"})


def last_line(text):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    prefix = "dockerdoctor: error: "
    return line[len(prefix):] if line.startswith(prefix) else line


def parse_json(module, stdout, rc, stderr, argv):
    try:
        data = json.loads(stdout)
    except ValueError:
        module.fail_json(msg="dockerdoctor failed (rc %d): %s" % (rc, last_line(stderr) or "no output"),
                         rc=rc, stdout=stdout, stderr=stderr, cmd=argv)
    if not isinstance(data, dict) or data.get("schema_version") != 1:
        module.fail_json(msg="dockerdoctor printed JSON of an unknown schema (rc %d)" % rc, rc=rc, cmd=argv)
    return data


def file_diffs(files):
    """Ansible's diff list (before, after, headers) from fix's `files`."""
    out = []
    for f in files or []:
        before = f.get("before")
        out.append({
            "before_header": f["path"] if before is not None else "%s (absent)" % f["path"],
            "after_header": f["path"],
            "before": before if before is not None else "",
            "after": f.get("after") or "",
        })
    return out
