"""Runs inside a node: the fusion a stage applies to redundant observations."""
