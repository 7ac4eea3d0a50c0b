"""Container nodes in Mininet's CLI (`mode=cli`): a Mininet host whose shell is in the
container.

Mininet starts a host's shell with `mnexec`; here the same shell is started through
the container node's own launcher (namespaces, cgroups, capabilities), so `h1 ping
h2`, `pingall`, `xterm`-free commands and `py` work on container nodes as on process
nodes. Mininet's own `popen` into the host (`mnexec -da PID`) enters the container
the same way.
"""

from __future__ import annotations

from typing import Any

from harness.emulation.backends.docker.container import DockerNode
from harness.emulation.backends.mininet_lib import Host
from harness.emulation.cgroups import started_joined


class ContainerHost(Host):
    def __init__(self, name: str, node: DockerNode, **params: Any) -> None:
        self.container_node = node
        super().__init__(name, **params)

    def startShell(self, mnopts: str | None = None) -> None:  # noqa: N802 - Mininet's name
        super().startShell(mnopts)
        self.pid = self.container_node.ns_pid  # not the launcher's: the container's

    def _popen(self, cmd: list[str], **params: Any) -> Any:
        """Mininet's `mnexec -cd[n] ...` (the shell) and `mnexec -da PID ...` (popen,
        e.g. the CLI reading an address with ifconfig) enter the container instead."""
        node = self.container_node
        if cmd[:1] == ["mnexec"]:
            rest = cmd[3:] if cmd[1] == "-da" else cmd[2:]
            cmd = [*node.enter, *rest]
            params["env"] = node.env
            join = params["preexec_fn"] = node.resources.preexec()
            p = started_joined(join, lambda: super(ContainerHost, self)._popen(cmd, **params),
                               node.name)
            node.launched.add(p.pid)
            return p
        return super()._popen(cmd, **params)
