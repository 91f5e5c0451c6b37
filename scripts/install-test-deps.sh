#!/usr/bin/env bash
# Install everything dockerdoctor's test suite needs on Debian 12 / Ubuntu, then the project in .venv.
#
#   bash scripts/install-test-deps.sh && .venv/bin/python -m pytest -q     (as root)
#
# Idempotent: on a machine that has it all, it refreshes the apt index, installs nothing new and
# re-runs `pip install -e '.[dbus,test]'` (fast when satisfied). The real-parts tests (tests/lab.py)
# start their OWN dockerd, containerd, docker-registry, firewalld and nginx inside network namespaces,
# so this script must not leave the packages' system services running (see policy-rc.d below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps.sh: run as root (sudo bash scripts/install-test-deps.sh)" >&2
  exit 1
fi

APT_PACKAGES=(
  docker.io containerd runc docker-registry skopeo podman buildah busybox-static
  firewalld nftables iptables nginx-light dbus
  libdbus-1-dev libglib2.0-dev pkg-config
  openssl iproute2 ca-certificates util-linux
  tcpdump  # issue 16: tests/real/test_daemon_identity.py captures the uplink while a probe runs
  curl  # issue 9: tests/real/test_explain_lab.py records what curl prints against broken lab endpoints
  apache2-utils  # issue 11: `htpasswd -B` writes the hashes serve-registry must accept (passwords > 72 bytes too)
  # issue 10 (fleets): sshd for the Ansible lab hosts, node_exporter + promtool, headless chromium for the
  # HTML fleet report, dash for the `collect --script` collector (busybox sh comes from busybox-static)
  openssh-server openssh-client prometheus-node-exporter prometheus chromium dash
  python3-venv python3-setuptools   # the lab hosts' Python: the role's venv, Ansible's pip module
)
PYTHON=${PYTHON:-python3}

# What the venv and dbus-python's build need, only if this Python lacks it (the pyenv Python on the
# project's machines has venv and headers; Debian's /usr/bin/python3 needs python3-venv/python3-dev).
command -v gcc >/dev/null 2>&1 || APT_PACKAGES+=(gcc)
if command -v "$PYTHON" >/dev/null 2>&1; then
  "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || APT_PACKAGES+=(python3-venv)
  "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || APT_PACKAGES+=(python3-dev)
else
  APT_PACKAGES+=(python3 python3-venv python3-dev)
fi

# No service may start during the install. docker.io, containerd, firewalld, nginx and dbus call
# invoke-rc.d in their postinst; on a fresh CI machine (a container or VM without systemd as PID 1)
# that runs /etc/init.d/docker etc. and leaves a system dockerd/containerd/firewalld running, which
# would change the host's firewall and compete with the lab. invoke-rc.d asks /usr/sbin/policy-rc.d
# first, and exit code 101 means "action forbidden". We write one only if there is none (a machine
# that has one, such as a Docker image, keeps its own), and remove ours again at the end, so a
# developer's machine is left as it was.
POLICY=/usr/sbin/policy-rc.d
OUR_POLICY=
cleanup() {
  if [ -n "$OUR_POLICY" ] && [ -f "$POLICY" ] && grep -q 'dockerdoctor install-test-deps' "$POLICY"; then
    rm -f "$POLICY"
  fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# dockerdoctor install-test-deps.sh: forbid service starts during the install (removed afterwards)\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  OUR_POLICY=1
fi

# A system dockerd that was running before we started is the host owner's; remember its PID so we
# only ever stop one that this install started.
pid_of_pidfile() { [ -r "$1" ] && cat "$1" 2>/dev/null || true; }
DOCKERD_BEFORE=$(pid_of_pidfile /var/run/docker.pid)

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get "${APT_OPTS[@]}" update
apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${APT_PACKAGES[@]}"

# If a system dockerd started anyway (e.g. a host whose own policy-rc.d allows it), and it was not
# running before, stop it by its pidfile: the lab starts its own daemons.
DOCKERD_AFTER=$(pid_of_pidfile /var/run/docker.pid)
if [ -n "$DOCKERD_AFTER" ] && [ "$DOCKERD_AFTER" != "$DOCKERD_BEFORE" ] && kill -0 "$DOCKERD_AFTER" 2>/dev/null; then
  echo "install-test-deps.sh: stopping the system dockerd (pid $DOCKERD_AFTER) that the install started" >&2
  kill "$DOCKERD_AFTER" || true
fi

# /etc/docker is the mount point for the lab's private /etc/docker (docker.io ships it; make sure).
[ -d /etc/docker ] || mkdir -p /etc/docker

# The project and its test extras in .venv.
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[dbus,test]'

# A wheelhouse of dockerdoctor's dependencies and its build backend (issue 10): the Ansible test installs
# dockerdoctor on its lab hosts with the role, from these wheels, without a network.
.venv/bin/python -m pip wheel -q -w .venv/wheelhouse . 'setuptools>=68' wheel

echo "install-test-deps.sh: done. Run the tests with: .venv/bin/python -m pytest -q"
