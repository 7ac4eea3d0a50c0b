"""Runs inside a node: structural resilience's forwarding policy (`fallback`)."""
