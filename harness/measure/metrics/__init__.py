"""A run's figures from its tables, after the run: pure functions of the request table,
the event rows and the configs (each checkable on a small table worked out by hand)."""
