"""The fleet tests' helpers live in fleetkit.py (a unique module name); their lab in fleetlab.py."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
