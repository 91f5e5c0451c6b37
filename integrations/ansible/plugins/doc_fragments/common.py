# -*- coding: utf-8 -*-
# Copyright: dockerdoctor developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Options shared by dockerdoctor.registry.check and dockerdoctor.registry.fix (the CLI's shared long options)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  registry:
    description:
      - Registries this host must be able to use, as C(HOST:PORT) (the CLI's C(--registry), repeatable).
      - Empty means the registries the host names itself (insecure-registries entries, registry containers,
        hosts in the docker journal's push and pull errors).
    type: list
    elements: str
    default: []
  root:
    description:
      - Inspect a snapshot on the managed host instead of the host itself (the CLI's C(--root)), a host root,
        an unpacked sosreport or a sosreport tarball. A snapshot is never probed over the network.
    type: path
  timeout:
    description:
      - Seconds allowed for each network probe (the CLI's C(--timeout)), between 0.05 and 60.
    type: float
    default: 2.0
  docker_host:
    description:
      - The daemon to inspect, as C(unix:///PATH) (the CLI's C(--docker-host)). Default the C(DOCKER_HOST) of the
        module's environment, else C(unix:///var/run/docker.sock).
    type: str
  executable:
    description:
      - Path of the dockerdoctor program on the managed host.
      - Default C(/opt/dockerdoctor/bin/dockerdoctor), where the role C(dockerdoctor.registry.install) puts it, else
        the first C(dockerdoctor) on C(PATH).
    type: path
requirements:
  - dockerdoctor on the managed host (Python 3.10 or later; the role dockerdoctor.registry.install installs it).
    Hosts without such a Python can still be diagnosed from a snapshot, see C(dockerdoctor collect --script).
"""
