"""Runs inside a node: the adaptive technique's forwarding policy (`plan`)."""
