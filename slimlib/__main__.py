"""``python -m slimlib``: see :mod:`slimlib.cli`.

The ``slimlib`` console script calls :func:`slimlib.cli.main` (older
installs call ``slimlib.__main__:main``, the same function), whose usage line
names the script; run as a module, the usage line says ``python -m slimlib``.
"""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m slimlib"))
