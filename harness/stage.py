"""`python -m harness.stage`: one stage server standalone (KServe v2 over gRPC).

A thin entry point; the code lives in `harness.pipeline.node.server`.
"""

import sys

from harness.pipeline.node.server import main

if __name__ == "__main__":
    sys.exit(main())
