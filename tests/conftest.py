"""pytest's own hooks. Helpers the tests share live in tests/helpers.py."""
