"""Link shapers: delay, jitter, loss and up/down, chosen by `_target_` (conf/shaper/)."""
