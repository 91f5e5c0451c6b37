"""The registry-side step of a trust fix: the same serve-registry command from every runtime's recipe."""

from __future__ import annotations

import pytest

from dockerdoctor.fixes import hosts_toml, registries_conf
from dockerdoctor.fixes.recipes.daemon import tls_fix
from dockerdoctor.model import RunCommand
from dockerdoctor.net import HostPort
from dockerdoctor.runtimes.containers_image import ConfigInput, load


def _serve(fix) -> tuple[str, ...]:
    return next(op.argv for op in fix.operations if isinstance(op, RunCommand) and "serve-registry" in op.argv)


@pytest.mark.parametrize("registry, port, host", [
    ("10.0.0.5:5000", "5000", "10.0.0.5"),
    ("reg.example", "443", "reg.example"),   # no port: the client tries 443, never "--port reg.example"
    ("[fd00::5]:5000", "5000", "fd00::5"),
])
def test_every_recipe_serves_tls_on_the_registrys_own_port(registry, port, host, tmp_path):
    want = ("dockerdoctor", "serve-registry", "--port", port, "--tls-self-signed", host)
    assert _serve(hosts_toml.trust_ca(str(tmp_path), registry, None, "containerd", plain=True)) == want
    conf, text = "/etc/containers/registries.conf", "unqualified-search-registries = []\n"
    podman = load(ConfigInput({conf: text}, {}))
    assert _serve(registries_conf.trust_fix(podman, registry, True, {conf: text})) == want
    assert _serve(tls_fix(HostPort.parse(registry), True)) == want
