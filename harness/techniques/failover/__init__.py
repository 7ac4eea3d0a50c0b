"""Failover replication (`technique=failover`): the technique, host side (technique.py),
and its in-node part, the `hedge` policy of active-active (node/). Nothing is imported
here: a stage loading the node part loads nothing of the host side."""
