"""`python -m harness.doctor`: what this machine offers the harness.

A thin entry point; the code lives in `harness.emulation.doctor`.
"""

import sys

from harness.emulation.doctor import main

if __name__ == "__main__":
    sys.exit(main())
