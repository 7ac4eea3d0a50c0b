"""`python -m harness.clean`: remove the leftovers of harness runs whose process is gone.

A thin entry point; the code lives in `harness.emulation.cleanup`.
"""

import sys

from harness.emulation.cleanup import main

if __name__ == "__main__":
    sys.exit(main())
