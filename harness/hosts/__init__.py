"""Where the emulation runs: this machine alone (`hosts=local`), or several hosts joined
by a network, each building its share of the topology (`hosts=emulated`: namespaces on
a shaped LAN of this machine; `hosts=ray`: the nodes of a Ray cluster)."""
