"""``python -m sklearn_useg``: the command line."""

import sys

from .cli import main

if __name__ == "__main__":  # not when pytest --doctest-modules imports it
    sys.exit(main())
