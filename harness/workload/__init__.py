"""The workload: sample libraries, the request schedule, replaying it through sensors."""
