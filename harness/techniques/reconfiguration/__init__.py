"""Pipeline reconfiguration (`technique=reconfiguration`): the technique, host side
(technique.py, with repartition.py: the moves planned for a lost stage), and its in-node
part, the controller (node/). Nothing is imported here: a process in a node loads
nothing of the host side."""
