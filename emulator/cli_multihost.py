"""The commands of a run across machines: agent, secret, the preflight (`validate --agents`) and deploy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emulator.errors import InputError
from emulator.model.units import format_time
from emulator.terminal import EXIT_OK, printable


def _us(ns: int) -> int:
    """`ns` rounded to the microsecond, for a line a person reads."""
    return round(ns, -3)


def cmd_secret(args: argparse.Namespace) -> int:
    """`caspian secret FILE`: a new shared secret in FILE, mode 0600 (an existing file is never overwritten)."""
    from emulator.multihost.rpc import new_secret, write_secret

    try:
        write_secret(args.file, new_secret())
    except FileExistsError:
        raise InputError("the file exists", where=args.file, fix="give a new file name; an existing secret is kept") from None
    except OSError as exc:
        raise InputError(f"cannot create the file: {exc.strerror}", where=args.file, fix="give a writable path") from None
    print(printable(f"{args.file}: a new secret (mode 0600); give the same file to every agent and to the coordinator"))
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    """`caspian agent --machine NAME --listen ADDR:PORT --secret-file FILE` (emulator.multihost.agent)."""
    from emulator.multihost.agent import serve
    from emulator.scenario.placement_section import MACHINE_NAME

    if not MACHINE_NAME.fullmatch(args.machine):
        raise InputError(f"{args.machine!r} is not a machine name", where="--machine",
                         fix="use the name the placement gives it: a-z, 0-9 and '-', starting with a letter")
    return serve(args.machine, args.listen, args.secret_file)


def cmd_preflight(args: argparse.Namespace) -> int:
    """`caspian validate FILE --agents AGENTS --secret-file SECRET`: reach every agent, measure, check."""
    from emulator.multihost.coordinator import preflight, read_agents
    from emulator.multihost.rpc import read_secret
    from emulator.scenario.loader import parse_scenario
    from emulator.scenario.reader import read_file

    if not args.secret_file:
        raise InputError("--agents needs --secret-file", fix="give the secret file the agents were started with")
    key = read_secret(args.secret_file)
    topology = parse_scenario(read_file(Path(args.file), "scenario"), source=args.file,
                              base_dir=Path(args.file).parent, across_machines=True).topology
    agents = read_agents(args.agents)
    found = preflight(topology, agents, key, agents_source=args.agents, echoes=args.echoes, wait_s=args.wait_agents)
    if args.json:
        json.dump(found.to_dict(), sys.stdout, indent=1)
        print()
        return EXIT_OK
    lines = []
    for machine, nodes in found.placement.machines:
        hello = found.hellos[machine]
        host, port = agents[machine]
        lines.append(f"machine {machine}: agent at {host}:{port} (caspian {hello.get('version')}, "
                     f"kernel {hello.get('kernel')}): {len(nodes)} node(s): {', '.join(nodes)}")
    for pair in found.underlays:
        u = pair.underlay
        lines.append(f"underlay {pair.first} - {pair.second}: {format_time(_us(u.delay_ns))} one way, "
                     f"spread {format_time(_us(u.spread_ns))} (p99 less median, {u.echoes} echoes, none lost)")
    for link in found.crossing:
        lines.append(f"link {link.name} crosses {link.owner} - {link.other}: the engine of {link.owner} gives it "
                     f"{format_time(_us(link.a_to_b.delay_ns))} a_to_b, {format_time(_us(link.b_to_a.delay_ns))} b_to_a "
                     "(to the microsecond; --json has them exact)")
    if not found.crossing:
        lines.append("no link crosses machines")
    lines.append(f"{args.file}: valid across {len(found.placement.names)} machines "
                 f"({len(found.crossing)} crossing link(s)); the run across machines is not built yet (docs/multihost.md)")
    for line in lines:
        print(printable(line))
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    """`caspian deploy k8s FILE --out DIR`: the run as Kubernetes manifests (emulator.deploy.k8s)."""
    from emulator.deploy.k8s import deploy_k8s, dns_label, machine_sizes
    from emulator.multihost.coordinator import resolve_placement
    from emulator.scenario.loader import parse_scenario
    from emulator.scenario.reader import read_file

    namespace = dns_label(args.namespace, "--namespace")
    text = read_file(Path(args.file), "scenario")
    scenario = parse_scenario(text, source=args.file, base_dir=Path(args.file).parent, across_machines=True)
    placement = resolve_placement(scenario.topology)
    written = deploy_k8s(scenario, placement, text, args.out, namespace=namespace, image=args.image)
    for machine, size in machine_sizes(scenario, placement).items():
        print(printable(f"machine {machine}: {size.nodes} node(s), {size.engine_links} link(s) in its engine: "
                        f"{size.cpus} CPUs, {size.memory_mib} MiB"))
    crossing = placement.crossing([(link.name, link.a.node, link.b.node) for link in scenario.topology.links])
    print(printable(f"{len(crossing)} of {len(scenario.topology.links)} links cross machines "
                    f"(carried over the underlay; the preflight checks each)"))
    print(printable(f"{args.out}: {len(written)} files for namespace {namespace} (kubectl apply -f {args.out}); "
                    f"the coordinator job runs the preflight: the run across machines is not built yet"))
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The multihost commands on the CLI's subparsers."""
    from emulator.multihost.rpc import DEFAULT_PORT

    p = sub.add_parser("agent", help="serve a run across machines on this machine (docs/multihost.md)")
    p.add_argument("--machine", required=True, help="this machine's name in the placement")
    p.add_argument("--listen", default=f"0.0.0.0:{DEFAULT_PORT}", metavar="ADDR:PORT",
                   help=f"this machine's address on the underlay (default 0.0.0.0:{DEFAULT_PORT})")
    p.add_argument("--secret-file", required=True, metavar="FILE", help="the run's shared secret (caspian secret FILE)")
    p.set_defaults(func=cmd_agent)

    from emulator.deploy.k8s import default_image

    p = sub.add_parser("deploy", help="write a topology across machines as Kubernetes manifests")
    p.add_argument("target", choices=("k8s",), help="where to deploy (k8s: Kubernetes)")
    p.add_argument("file", help="a scenario with a placement: section")
    p.add_argument("--out", required=True, metavar="DIR", help="a new directory for the manifests")
    p.add_argument("--namespace", default="caspian", help="the Kubernetes namespace (default caspian)")
    p.add_argument("--image", default=default_image(), help=f"the image with caspian (default {default_image()})")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("secret", help="make a new shared secret for a run across machines")
    p.add_argument("file")
    p.set_defaults(func=cmd_secret)


def add_validate_options(p: argparse.ArgumentParser) -> None:
    """validate's options for the preflight of a topology across machines."""
    from emulator.multihost.coordinator import DEFAULT_ECHOES

    p.add_argument("--agents", metavar="FILE",
                   help="a topology across machines: reach these agents, measure the underlay, check each crossing link")
    p.add_argument("--secret-file", metavar="FILE", help="with --agents: the run's shared secret")
    p.add_argument("--wait-agents", type=float, default=0.0, metavar="SECONDS",
                   help="with --agents: wait up to SECONDS for each agent to answer (pods still starting)")
    p.add_argument("--echoes", type=int, default=DEFAULT_ECHOES, help=argparse.SUPPRESS)
