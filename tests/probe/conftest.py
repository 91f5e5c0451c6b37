"""Session fixtures of the endpoint probe tests; they live in eplab.py (a unique module name)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from eplab import ep_dockerd, ep_lab, ep_serve_registry  # noqa: E402,F401
