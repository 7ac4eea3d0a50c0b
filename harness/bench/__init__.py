"""The benchmark (`python -m harness.bench`, `make bench`) and its sections, each a module:
link fidelity, backends, scale, the pipeline matrix, multi-modal sensing; the gate's
baseline-commit checkout (`--base`); the sections' markdown."""
