"""Resilience techniques: plug-ins chosen by `technique=<name>` (conf/technique/)."""
