"""Names of everything a run creates: run prefix, namespaces, interfaces.

Pure functions. Every kernel object a run makes carries the run's prefix
(`csp` + 5 hex digits), so two runs on one machine never collide and a
leftover can always be traced to the run that recorded it.
"""

from __future__ import annotations

import re
import secrets

from emulator.errors import ScenarioError
from emulator.scenario.topology import Topology

#: `csp` + 5 lowercase hex digits
PREFIX_RE = re.compile(r"^csp[0-9a-f]{5}$")

#: the kernel's IFNAMSIZ minus the terminating NUL
IFNAME_MAX = 15

#: node names the network layer itself uses (`{prefix}-wire` is the wire namespace)
RESERVED_NODE_NAMES = ("wire",)

# Interface names may not contain '/', ':' or whitespace (the kernel refuses
# them, iproute2 cannot address them); anything else odd becomes '-'.
_IFNAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_NODE_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


def new_prefix() -> str:
    """A fresh random run prefix, `csp` + 5 lowercase hex digits."""
    return "csp" + secrets.token_hex(3)[:5]


def is_prefix(text: str) -> bool:
    """True if `text` has the form of a run prefix."""
    return bool(PREFIX_RE.match(text))


def netns_name(prefix: str, node: str) -> str:
    """Network namespace of `node` in the run with `prefix`."""
    return f"{prefix}-{node}"


def of_run(prefix: str, netns: str) -> bool:
    """True if namespace `netns` belongs to the run `prefix`: a node's (`{prefix}-NODE`),
    the wire's, or one of the simulated machines' (`{prefix}+...`, emulator.network.machines)."""
    return netns.startswith(prefix + "-") or netns.startswith(prefix + "+")


def wire_netns_name(prefix: str) -> str:
    """The run's wire namespace, which holds the engine's link ends."""
    return f"{prefix}-wire"


def wire_ifnames(link_index: int) -> tuple[str, str]:
    """Wire-side interface names of link number `link_index` (ends a, b)."""
    return (f"l{link_index}a", f"l{link_index}b")


def check_node_names(topology: Topology) -> None:
    """Raise ScenarioError for node names the network layer cannot use."""
    for node in topology.nodes:
        where = f"{topology.source}: nodes.{node.name}"
        if node.name in RESERVED_NODE_NAMES:
            raise ScenarioError(
                f"node name {node.name!r} is reserved", where=where, fix="rename the node"
            )
        if not _NODE_NAME_OK.match(node.name) or node.name in (".", ".."):
            raise ScenarioError(
                f"node name {node.name!r} cannot name a network namespace",
                where=where,
                fix="use letters, digits, '-', '_' and '.' only",
            )


def interface_names(topology: Topology) -> dict[tuple[str, str], str]:
    """Node-side interface name of every link end: {(node, link): ifname}.

    The interface is named after the peer node, cut to 15 characters; a
    second link to the same peer (or a cut name that collides) gets a digit
    appended: `sumgait`, `sumgait2`, `sumgait3`. `lo` is never produced.
    """
    names: dict[tuple[str, str], str] = {}
    taken: dict[str, set[str]] = {node.name: {"lo"} for node in topology.nodes}
    for link in topology.links:
        for node, peer in ((link.a.node, link.b.node), (link.b.node, link.a.node)):
            used = taken.setdefault(node, {"lo"})
            base = _IFNAME_BAD.sub("-", peer)[:IFNAME_MAX] or "peer"
            name = base
            serial = 2
            while name in used:
                suffix = str(serial)
                name = base[: IFNAME_MAX - len(suffix)] + suffix
                serial += 1
            used.add(name)
            names[(node, link.name)] = name
    return names
