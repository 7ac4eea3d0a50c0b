"""`python -m harness.report DIR...`: a thin entry; the code is `harness.report.render`."""

import sys

from harness.report.render import main

if __name__ == "__main__":
    sys.exit(main())
