"""`python -m harness.emulation.zygote FD`: the zygote, on the socket FD (the backend starts it)."""

import sys

from harness.emulation.zygote.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
