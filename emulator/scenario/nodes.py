"""The `nodes:` section: each node's name, role, own addresses and BGP AS number."""

from __future__ import annotations

import re

import yaml

from emulator.scenario.addresses import host_address
from emulator.scenario.builder import Builder
from emulator.scenario.reader import Document, is_null, join_path
from emulator.scenario.topology import NODE_ROLES, Node, Topology

#: Node names become parts of interface and namespace names; 15 is IFNAMSIZ - 1.
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}")
NODE_FIELDS: tuple[str, ...] = ("role", "address", "address6", "asn")
#: BGP AS numbers: 4 bytes, not 0 (RFC 7607) nor 23456 (AS_TRANS, RFC 6793) nor 4294967295
ASN_RANGE = (1, 4_294_967_294)


def read_nodes(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`nodes: {NAME: {role, address, address6, asn}, ...}` (read after `routing`: asn needs BGP)."""
    pairs = doc.mapping(node, path)
    if not pairs:
        doc.fail(node, path, "no nodes", "list at least two nodes, e.g. europe: {role: host}")
    for name, key_node, value_node in pairs:
        here = join_path(path, name)
        if not NODE_NAME.fullmatch(name):
            doc.fail(key_node, here, f"node name {name!r} is not valid", "use a-z, 0-9 and -, start with a letter, at most 15 characters")
        fields = {} if is_null(value_node) else {k: v for k, _, v in doc.mapping(value_node, here, NODE_FIELDS)}
        role = "host"
        if "role" in fields:
            role = doc.text(fields["role"], join_path(here, "role"), "router")
            if role not in NODE_ROLES:
                doc.fail(fields["role"], join_path(here, "role"), f"unknown role {role!r}", f"use one of {', '.join(NODE_ROLES)}")
        address = address6 = None
        if "address" in fields:
            address = host_address(doc, fields["address"], join_path(here, "address"), 4, out)
        if "address6" in fields:
            address6 = host_address(doc, fields["address6"], join_path(here, "address6"), 6, out)
        asn = None
        if "asn" in fields:
            asn = _read_asn(doc, fields["asn"], join_path(here, "asn"), role, out)
        out.nodes[name] = Node(name=name, role=role, address=address, address6=address6, asn=asn)
    if out.routing is not None and out.routing.protocol == "bgp":
        _check_asns(doc, {name: key_node for name, key_node, _ in pairs}, path, out)


def _read_asn(doc: Document, node: yaml.Node, path: str, role: str, out: Builder) -> int:
    if out.routing is None or out.routing.protocol != "bgp":
        doc.fail(node, path, "asn applies to BGP routing only", "add 'routing: {protocol: bgp}' at the top level or remove asn")
    if role != "router":
        doc.fail(node, path, "asn applies to routers only (hosts run no daemon)", "remove it, or give the node role: router")
    asn = doc.integer(node, path, *ASN_RANGE, "64512")
    if asn == 23456:
        doc.fail(node, path, "AS 23456 is AS_TRANS (RFC 6793), not a real AS", "e.g. a private AS from 64512..65534")
    return asn


def _check_asns(doc: Document, keys: dict[str, yaml.Node], path: str, out: Builder) -> None:
    """Every router's AS (given or default) is its own: eBGP between every pair of routers."""
    topology = Topology(nodes=tuple(out.nodes.values()), links=(), source=doc.source, routing=out.routing)
    owner: dict[int, str] = {}
    for router, asn in zip(topology.routers(), topology.router_asns()):  # not asn() per router: O(n) each
        if asn in owner:
            here = join_path(path, router.name)
            doc.fail(keys[router.name], here, f"router {router.name} has AS {asn}, as {owner[asn]} does",
                     "give every router its own asn (each router is an AS of its own: eBGP only)")
        owner[asn] = router.name
