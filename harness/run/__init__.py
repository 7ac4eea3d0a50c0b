"""One run of the harness: the validated experiment, its phases, its event log."""
