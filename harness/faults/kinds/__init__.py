"""Fault kinds, one module per family; every module here is discovered (faults/base.py)."""
