"""Credentials for one registry in the docker client configuration, found the way the docker CLI
finds them, and reported without ever exposing a secret.

The CLI looks in ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``):
``credHelpers[HOST:PORT]`` first, then ``credsStore``, then ``auths``. Keys of ``auths`` match when
they equal ``HOST:PORT`` once a scheme and path are stripped (``https://HOST:PORT/v1/`` matches);
``HOST`` alone, or another port, does not.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Literal

from dockerdoctor.model import Provenance
from dockerdoctor.net import HostPort

CredentialSource = Literal["", "auths", "credHelpers", "credsStore"]  # "": none found


@dataclass
class CredentialInfo:
    config_path: str
    config_exists: bool = False
    found: bool = False
    source: CredentialSource = ""
    helper: str | None = None  # docker-credential-NAME for credHelpers / credsStore
    helper_missing: bool = False
    username: str | None = None  # a user name is not a secret; the password/token never leaves here
    near_misses: list[str] = field(default_factory=list)  # auths keys for the same host, other port/none
    error: str | None = None
    _secret: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """The docker client configuration the credentials were looked up in (never a secret)."""
        return Provenance(self.config_path, text, line)

    def to_dict(self) -> dict[str, object]:
        return {
            "config_path": self.config_path,
            "config_exists": self.config_exists,
            "found": self.found,
            "source": self.source,
            "helper": self.helper,
            "helper_missing": self.helper_missing,
            "username": self.username,
            "near_misses": self.near_misses,
            "error": self.error,
        }


def docker_config_path(explicit: str | None = None) -> str:
    """The client config the pushing user's docker CLI reads: --docker-config, $DOCKER_CONFIG,
    ~/.docker; under sudo, the invoking user's ~/.docker when root has none."""
    if explicit:
        return explicit if explicit.endswith(".json") else os.path.join(explicit, "config.json")
    if os.environ.get("DOCKER_CONFIG"):
        return os.path.join(os.environ["DOCKER_CONFIG"], "config.json")
    own = os.path.join(os.path.expanduser("~"), ".docker", "config.json")
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root" and not os.path.exists(own):
        theirs = os.path.join(os.path.expanduser(f"~{sudo_user}"), ".docker", "config.json")
        if os.path.exists(theirs):
            return theirs
    return own


def _hostname_of(key: str) -> str:
    """docker/cli's ConvertToHostname: strip the scheme and anything after the first slash."""
    k = key
    if k.startswith("http://"):
        k = k[len("http://"):]
    elif k.startswith("https://"):
        k = k[len("https://"):]
    return k.split("/", 1)[0]


def find_credentials(address: HostPort, config: str | None = None, *, run_helpers: bool = True,
                     timeout: float = 3.0) -> CredentialInfo:
    path = docker_config_path(config)
    info = CredentialInfo(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        info.config_exists = True
    except FileNotFoundError:
        return info
    except (OSError, ValueError) as exc:
        info.config_exists = True
        info.error = f"cannot read {path}: {exc}"
        return info
    if not isinstance(data, dict):
        info.error = f"{path} is not a JSON object"
        return info
    want = str(address)
    auths: dict = data["auths"] if isinstance(data.get("auths"), dict) else {}
    for key in auths:
        hn = _hostname_of(key)
        if hn != want and HostPort.parse(hn).host == address.host:
            info.near_misses.append(key)
    helpers: dict = data["credHelpers"] if isinstance(data.get("credHelpers"), dict) else {}
    helper = helpers.get(want)
    if helper:
        info.source, info.helper = "credHelpers", f"docker-credential-{helper}"
        _ask_helper(info, want, run_helpers, timeout)
        return info
    store = data.get("credsStore")
    if isinstance(store, str) and store:
        info.source, info.helper = "credsStore", f"docker-credential-{store}"
        _ask_helper(info, want, run_helpers, timeout)
        if info.found:
            return info
    entry = auths.get(want)
    if entry is None:
        entry = next((v for k, v in auths.items() if _hostname_of(k) == want), None)
    if isinstance(entry, dict) and (entry.get("auth") or entry.get("identitytoken")
                                    or entry.get("username")):
        info.found, info.source, info.helper = True, "auths", None
        user, pw = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode("utf-8", "replace").partition(":")
            except (ValueError, TypeError):
                info.error = f'the "auth" value for {want} in {path} is not valid base64'
        info.username = user or None
        if user and pw:
            info._secret = (user, pw)
    return info


def _ask_helper(info: CredentialInfo, server: str, run: bool, timeout: float) -> None:
    """Ask a credential helper whether it holds credentials (its `list` shows only user names)."""
    assert info.helper
    exe = shutil.which(info.helper)
    if exe is None:
        info.helper_missing = True
        return
    if not run:
        info.found = True  # assumed; not checked
        return
    try:
        r = subprocess.run([exe, "list"], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        listing = json.loads(r.stdout or b"{}") if r.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        info.error = f"{info.helper} list failed: {exc.__class__.__name__}"
        return
    for url, user in (listing or {}).items():
        if _hostname_of(url) == server:
            info.found, info.username = True, user or None
            return
