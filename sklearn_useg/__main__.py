"""``python -m sklearn_useg``: the command line."""

import sys

from .cli import main

sys.exit(main())
