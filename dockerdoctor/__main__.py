"""Entry point. `--version` is answered before typer is imported, so it stays instant."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from dockerdoctor import __version__

        print(f"dockerdoctor {__version__}")
        return
    # dockerdoctor renders its own output; keep typer from importing rich (100+ ms at every start).
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from dockerdoctor.cli import run

    run()


if __name__ == "__main__":
    main()
