"""`python -m harness.bench`: the benchmark behind `make bench`.

A thin entry point; the code lives in `harness.report.bench`.
"""

import sys

from harness.report.bench import main

if __name__ == "__main__":
    sys.exit(main())
