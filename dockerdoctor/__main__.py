"""Entry point. `--version` is answered before typer is imported, so it stays instant."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from dockerdoctor import __version__

        print(f"dockerdoctor {__version__}")
        return
    from dockerdoctor.cli import run  # which loads typer without rich (see there)

    run()


if __name__ == "__main__":
    main()
