"""Runs inside a sensor node: the open-loop load generator."""
