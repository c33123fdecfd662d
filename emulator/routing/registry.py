"""Which class runs a topology's routing daemons: the one place `routing.daemon` (bird | frr) is resolved.

The scenario loader accepts only the names in
`emulator.scenario.topology.ROUTING_DAEMONS`; every one has its class here.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from emulator.errors import ScenarioError
from emulator.routing.bird_daemons import BirdDaemons
from emulator.routing.daemons import RoutingDaemons, routing_config
from emulator.routing.frr_daemons import FrrDaemons

if TYPE_CHECKING:
    from emulator.network.network import Network
    from emulator.scenario.topology import Topology

#: daemon name (a topology's `routing.daemon`) -> the class that runs it
DAEMON_CLASSES: Mapping[str, type[RoutingDaemons]] = MappingProxyType({
    BirdDaemons.name: BirdDaemons,
    FrrDaemons.name: FrrDaemons,
})


def daemon_class(topology: Topology) -> type[RoutingDaemons]:
    """The class of the daemon family the topology's `routing.daemon` names (ScenarioError if none does)."""
    name = routing_config(topology).daemon
    try:
        return DAEMON_CLASSES[name]
    except KeyError:
        raise ScenarioError(f"unknown routing daemon {name!r}", where="routing.daemon",
                            fix=f"use one of {', '.join(DAEMON_CLASSES)}") from None


def routing_daemons(network: Network) -> RoutingDaemons:
    """The daemon family the network's topology asks for (`routing.daemon`), not started yet."""
    return daemon_class(network.topology)(network)


def check_binaries(topology: Topology) -> None:
    """EnvironmentProblem, before anything is made, if the topology's routing daemon is not installed."""
    daemon_class(topology).check_binaries(topology)
