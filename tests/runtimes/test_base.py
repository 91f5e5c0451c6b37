"""The shared runtime-adapter shape: image references parse as the Go clients normalise them."""

import pytest

from dockerdoctor.runtimes.base import Endpoint, ImageRef, Origin


@pytest.mark.parametrize(
    "text, registry, repository, reference, qualified",
    [
        ("alpine", "docker.io", "library/alpine", "latest", False),
        ("team/app:1", "docker.io", "team/app", "1", False),
        ("10.0.0.5:5000/app:1", "10.0.0.5:5000", "app", "1", True),
        ("localhost/app", "localhost", "app", "latest", True),
        ("Registry.Example:443/a/b:v2", "registry.example:443", "a/b", "v2", True),
        ("[::1]:5000/x", "[::1]:5000", "x", "latest", True),
        ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3", True),
        ("docker://quay.io/x/y@sha256:" + "a" * 64, "quay.io", "x/y", "sha256:" + "a" * 64, True),
    ],
)
def test_parse(text: str, registry: str, repository: str, reference: str, qualified: bool) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.reference, ref.qualified) == (registry, repository, reference, qualified)


@pytest.mark.parametrize("text", ["", "a b", "UPPER/Bad", "x@sha256:zz", "10.0.0.5:abc/x", "app:-bad"])
def test_bad_references_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        ImageRef.parse(text)


def test_origin_cites_itself() -> None:
    o = Origin("/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml", 3, 'server = "http://10.0.0.5:5000"')
    ev = o.evidence()
    assert (ev.source, ev.line, ev.text) == (o.source, 3, o.detail)
    assert o.where() == "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml:3"
    e = Endpoint("http://10.0.0.5:5000/v2", "http", "10.0.0.5:5000", "mirror", origin=o)
    assert e.tls.skip_verify is False and e.capabilities == ("pull", "resolve", "push")
