"""`python -m harness.probe`: UDP probes to run inside emulated hosts.

A thin entry point; the code lives in `harness.measure.node.probe`.
"""

import sys

from harness.measure.node.probe import main

if __name__ == "__main__":
    sys.exit(main())
