"""`python -m harness.gate BASELINE CURRENT`: the regression gate (`harness.report.gate`)."""

import sys

from harness.report.gate import main

if __name__ == "__main__":
    sys.exit(main())
