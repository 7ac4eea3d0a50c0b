"""`python -m harness.partition`: cut an ONNX model into partitions at named tensors.

A thin entry point; the code lives in `harness.pipeline.partition`.
"""

import sys

from harness.pipeline.partition import main

if __name__ == "__main__":
    sys.exit(main())
