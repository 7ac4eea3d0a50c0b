"""Turning runs into answers: the benchmark and its report."""
