"""The inference pipeline: partitions of a model placed on nodes, served over KServe v2."""
