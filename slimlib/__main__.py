"""``python -m slimlib``: see :mod:`slimlib.cli`."""
import sys

from .cli import main

sys.exit(main())
