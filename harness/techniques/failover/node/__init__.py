"""Runs inside a node: failover's forwarding policy (`hedge`)."""
