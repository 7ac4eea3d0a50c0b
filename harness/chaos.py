"""`python -m harness.chaos`: kill trials (behind `make chaos`).

A thin entry point; the code lives in `harness.selftest.chaos`.
"""

import sys

from harness.selftest.chaos import main

if __name__ == "__main__":
    sys.exit(main())
