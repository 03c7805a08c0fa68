"""Quality benchmark: every method with its defaults plus baselines, one table per task.

    python benchmarks/quality.py --n-images 10 --datasets bsds horse --out docs/benchmarks.md

Prints a Markdown document (a header naming the command, backbone and device, then one
table per task) and, with ``--out``, writes it to that file too; without ``--out`` no
file is written. The same as ``sklearn-useg benchmark``; the code lives in
``sklearn_useg/_benchmark.py``.
"""

import sys

from sklearn_useg._benchmark import main

if __name__ == "__main__":
    sys.exit(main())
