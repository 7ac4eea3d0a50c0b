"""`python -m harness.overhead`: the null-stage overhead benchmark.

A thin entry point; the code lives in `harness.bench.overhead`.
"""

import sys

from harness.bench.overhead import main

if __name__ == "__main__":
    sys.exit(main())
