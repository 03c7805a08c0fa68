"""Quality benchmark: every method with its defaults plus baselines, one table per task.

    python benchmarks/quality.py --n-images 10 --datasets bsds horse

Prints Markdown tables and writes them to ``docs/benchmarks.md`` (``--out``). The same
as ``sklearn-useg benchmark``; the code lives in ``sklearn_useg/_benchmark.py``.
"""

import sys

from sklearn_useg._benchmark import main

if __name__ == "__main__":
    sys.exit(main())
