"""The registry host's firewall facts, by topic (this module keeps the old import path):
firewalld (facts/firewalld.py, over D-Bus in facts/firewalld_dbus.py), the interfaces
(facts/interfaces.py) and the packet filters (facts/netfilter.py)."""

from __future__ import annotations

from dockerdoctor.facts.firewalld import *  # noqa: F403
from dockerdoctor.facts.firewalld import _port_in, _services_from_files, _zones_from_files  # noqa: F401
from dockerdoctor.facts.firewalld_dbus import *  # noqa: F403
from dockerdoctor.facts.firewalld_dbus import _settings_from_tuple, _to_py, _zone_from_settings  # noqa: F401
from dockerdoctor.facts.interfaces import *  # noqa: F403
from dockerdoctor.facts.netfilter import *  # noqa: F403
