"""Faults on a schedule: one plug-in per action (crash, link_down, throttle, ...)."""
