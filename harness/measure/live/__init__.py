"""Watching the running emulation: link fidelity probes after bring-up, the shaper's
link counters over time, the stage processes' memory. They need the live network or
processes; what they return is plain data for `metrics/` and the summary."""
