"""Sensing redundancy (`technique=sensing_redundancy`): the technique, host side
(technique.py), and its in-node part, the fusion a stage runs (node/). Nothing is
imported here: a stage loading the node part loads nothing of the host side."""
