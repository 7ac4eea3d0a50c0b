"""Measurement of a run, by when it happens: `live/` watches the running emulation
(link fidelity, link counters, stage memory), `metrics/` turns a run's tables into its
figures afterwards (pure functions: outcomes and summary, resilience, reference
accuracy, the canary stream's schedule), `node/` runs inside emulated nodes (UDP probes).
Benchmarks that measure the harness itself (stage overhead, host noise) are the bench's."""
