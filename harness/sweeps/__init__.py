"""Running a sweep's jobs somewhere else than one after another in this process.

Hydra launchers decide where a multirun's jobs run; this package holds the harness's
side of them (how an emulation may share a host), while `harness.report.sweep` turns
the jobs' directories into one table, whichever launcher ran them.
"""
