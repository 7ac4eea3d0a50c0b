"""Structural resilience (`technique=structural`): the technique, host side (technique.py),
and its in-node part, the `fallback` policy (node/). Nothing is imported here: a stage
loading the node part loads nothing of the host side."""
