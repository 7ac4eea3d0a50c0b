"""`python -m harness.bench`: the benchmark behind `make bench`.

A thin entry point; the code lives in `harness.bench.main`. Its files are as
readable as its runs' (`results.readable_by` among the overrides; root alone by default).
"""

import sys

from harness.bench.main import main
from harness.core import access

if __name__ == "__main__":
    access.use_for_command("bench", sys.argv[1:])
    sys.exit(main())
