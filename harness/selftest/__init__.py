"""The harness checking itself from the outside: kill trials (`chaos`) and the machine
inventory they compare before and after."""
