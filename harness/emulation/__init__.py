"""The emulated network: topologies, nodes (backends), links (shapers), cleanup."""
