"""A rows x cols grid of routers with a host at two opposite corners: the bring-up benchmark.

Routers are `r{row}x{col}`; each is linked to its right and lower
neighbour (links named `rAxB-rCxD`, horizontal ones of a row before the
vertical ones below it). Host `h1` hangs off `r0x0`, host `h2` off the
opposite corner. A 10x10 grid has 102 nodes and 182 links.
"""

from __future__ import annotations

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.units import parse_time
from emulator.scenario.topology import Link, LinkEnd, Node, Topology


def router_name(row: int, col: int) -> str:
    """Name of the router at (`row`, `col`)."""
    return f"r{row}x{col}"


def grid_topology(rows: int, cols: int, delay: str = "100us") -> Topology:
    """The grid of `rows` x `cols` routers, every link `delay` one way in each direction."""
    if rows < 1 or cols < 1 or rows * cols < 2:
        raise InputError(f"a {rows}x{cols} grid has no two corners", fix="use at least 1x2 routers")
    params = LinkParams(delay_ns=parse_time(delay, field="delay"))

    def link(a: str, b: str) -> Link:
        return Link(name=f"{a}-{b}", a=LinkEnd(a), b=LinkEnd(b), a_to_b=params, b_to_a=params)

    last = router_name(rows - 1, cols - 1)
    nodes = [Node("h1")] + [
        Node(router_name(r, c), role="router") for r in range(rows) for c in range(cols)
    ] + [Node("h2")]
    links = [link("h1", router_name(0, 0))]
    for r in range(rows):
        for c in range(cols - 1):
            links.append(link(router_name(r, c), router_name(r, c + 1)))
        if r + 1 < rows:
            for c in range(cols):
                links.append(link(router_name(r, c), router_name(r + 1, c)))
    links.append(link(last, "h2"))
    return Topology(nodes=tuple(nodes), links=tuple(links), name=f"grid-{rows}x{cols}", source=f"<grid {rows}x{cols}>")
