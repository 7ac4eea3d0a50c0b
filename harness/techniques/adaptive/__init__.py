"""An adaptive policy (`technique=adaptive`): the technique, host side (technique.py), and
its in-node part, the `plan` policy that decides in the stage (node/). Nothing is
imported here: a stage loading the node part loads nothing of the host side."""
