"""The packaged default topology: Europe–Sumgait–Aktau–Asia over the Caspian cable."""

from __future__ import annotations

from pathlib import Path

from emulator.scenario.loader import load_topology
from emulator.scenario.topology import Topology

#: The default topology file, shipped inside the package (setup.py: data/*).
DEFAULT_TOPOLOGY_PATH: Path = Path(__file__).resolve().parent.parent / "data" / "aktau_sumgait.yaml"


def default_topology() -> Topology:
    """The default topology, loaded and validated from `DEFAULT_TOPOLOGY_PATH`."""
    return load_topology(DEFAULT_TOPOLOGY_PATH)
