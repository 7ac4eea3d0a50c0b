"""Processes that run inside emulated nodes for measurement (UDP probes)."""
