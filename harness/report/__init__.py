"""Turning result files into answers: the runs behind a report, statistics, figures,
markdown/HTML, sweep tables, traces, the gate's comparison (pure functions of files)."""
