"""Runs inside a node: the reconfiguration controller."""
