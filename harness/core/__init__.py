"""What every layer shares: structured configs and ConfigError, atomic output files, paths."""
