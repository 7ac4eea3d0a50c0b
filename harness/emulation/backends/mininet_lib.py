"""Mininet, imported without setuptools' `pkg_resources`.

`mininet.node` imports `distutils.version` (to compare Open vSwitch versions; no switch
runs here). In a venv, setuptools' distutils shim answers that import by loading
`pkg_resources`, which scans every installed distribution: 0.2 s of every run's start
on this machine, 0.4 s beside a busy loop, in each of the ~100 runs of `make test`.
Python 3.11's own distutils answers it at once, so the shim is set aside here, before
anything imports distutils (Python 3.12 has no distutils of its own: the shim stays).
"""

from __future__ import annotations

import sys
import warnings

if sys.version_info < (3, 12) and "distutils" not in sys.modules:
    try:
        import _distutils_hack

        _distutils_hack.remove_shim()
    except (ImportError, AttributeError):  # no setuptools shim here: nothing to set aside
        pass

with warnings.catch_warnings():  # the standard library's distutils says it is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    from mininet.link import Intf
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import Host

__all__ = ["Host", "Intf", "Mininet", "setLogLevel"]
