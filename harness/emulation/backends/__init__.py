"""Emulation backends: how a topology node becomes something that runs processes.

`mininet` (processes in network namespaces) is the default; a Docker backend
implements the same `Backend`/`EmuNode` interface.
"""
