"""pytest's own hooks. Helpers the tests share live in tests/helpers.py; fixtures that
several test modules share are plugins listed here (imported by name they would shadow
the tests' parameters)."""

pytest_plugins = ["tests.faults_kit", "tests.delayline_kit"]
