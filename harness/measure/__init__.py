"""Measurement: request outcomes and resilience metrics, link fidelity, stage overhead."""
