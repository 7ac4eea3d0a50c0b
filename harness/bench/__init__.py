"""The benchmark (`python -m harness.bench`, `make bench`) and its sections, each a module:
link fidelity, stage overhead (with its bare-relay floors and loopback stage processes),
backends, scale, the pipeline matrix, multi-modal sensing; the machine's noise measured
before each section; the gate's baseline-commit checkout (`--base`); the sections'
markdown."""
