"""`python -m dockerdoctor.knowledge --compile`: regenerate data/errors-compiled.json."""

import sys

from dockerdoctor.knowledge.base import write_compiled_file

if sys.argv[1:] == ["--compile"]:
    print(write_compiled_file())
else:
    sys.stderr.write("usage: python -m dockerdoctor.knowledge --compile\n")
    sys.exit(2)
