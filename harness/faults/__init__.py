"""Faults on a schedule: one plug-in per action (crash, link_down, throttle, ...).

`base.py` (what a kind is, the registry), `kinds/` (one module per family),
`schedule.py` (parsing and checking a schedule), `injector.py` (running it).
"""
