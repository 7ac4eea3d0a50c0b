"""What every layer shares: structured configs and ConfigError, atomic output files and who
may read them, paths."""
