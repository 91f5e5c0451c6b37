"""Runtime adapters: every client of the registry on a host, in one shape (see base.py)."""
