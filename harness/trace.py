"""`python -m harness.trace RUN_DIR...`: a run as a Chrome trace (trace.json) for Perfetto."""

import sys

from harness.report.trace import main

if __name__ == "__main__":
    sys.exit(main())
