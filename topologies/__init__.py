"""Topology builders: functions that return a pure `harness.emulation.topology.Topology`.

Each is selected and parameterised by a file in `conf/topology/` through its
`_target_`; add a builder here and a YAML file there to add a topology.
"""
