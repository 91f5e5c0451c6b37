"""Small helpers the command line uses for image references (kept out of the cli package)."""

from __future__ import annotations

from dockerdoctor.errors import InputError
from dockerdoctor.runtimes.base import ImageRef


def image_registries(images: list[str]) -> list[str]:
    """The HOST:PORT registries of `check --image` references, as --registry values.

    A registry without a port (registry.example.com) is not a --registry target (those need a port);
    the DD7xx rules still see the image through the `checked_images` fact.
    """
    out: list[str] = []
    for text in images:
        try:
            ref = ImageRef.parse(text)
        except ValueError as exc:
            raise InputError(f"--image {text!r}: {exc}") from None
        if ref.qualified and ":" in ref.registry and ref.registry not in out:
            out.append(ref.registry)
    return out
