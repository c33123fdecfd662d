"""`caspian` — the command line (tc/ip-like words, Mininet-like verbs).

    caspian run [SCENARIO] [--seed N]        build, measure, tear down
    caspian validate FILE                    check a topology file
    caspian up [FILE] / caspian down [--all] a testbed that stays up
    caspian exec NODE -- CMD...              run anything inside a node
    caspian link show|set|cut|restore LINK [netem words]
    caspian stats [--json]
    caspian bench [--json]

Exit codes: 0 success, 1 a check failed, 3 inconclusive (the run's own
error could have flipped a check: docs/verdicts.md), 2 bad input or environment (one
line on stderr naming the input and the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from emulator.errors import CaspianError, EnvironmentProblem, InputError, TestbedError
from emulator.network.state import DEFAULT_ROOT

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _load(path: str | None) -> Any:
    from emulator.scenario.default import default_topology
    from emulator.scenario.loader import load_topology

    return load_topology(path) if path else default_topology()


def _root_required() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("caspian needs root for network namespaces and AF_PACKET (run it with sudo)")


# ---------------------------------------------------------------- commands

def cmd_validate(args: argparse.Namespace) -> int:
    topology = _load(args.file)
    print(f"{args.file}: valid ({len(topology.nodes)} nodes, {len(topology.links)} links)")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    if args.plan is not None:
        return _print_plan(args)
    from emulator.network.signals import install_teardown_handlers
    from emulator.testbed import Testbed

    topology = _load(args.file)
    _root_required()
    testbed = Testbed(topology, state_root=args.state_root, seed=args.seed, shards=args.shards)
    restore = install_teardown_handlers()
    try:
        testbed.start()
    except BaseException:
        restore()
        raise
    restore()
    assert testbed.state is not None
    print(f"caspian: testbed {testbed.state.prefix} is up ({len(topology.nodes)} nodes, "
          f"{len(topology.links)} links; engine pid {testbed.engine_pid}, "
          f"{testbed.engine_options.shards} shard{'s' if testbed.engine_options.shards != 1 else ''})")
    print(f"  try: caspian exec {topology.nodes[0].name} -- ping {topology.nodes[-1].name}")
    print("  stop it with: caspian down")
    return EXIT_OK


#: the run prefix a printed plan uses: a real `caspian up` draws a fresh one
PLAN_PREFIX = "csp00000"


def _print_plan(args: argparse.Namespace) -> int:
    """`caspian up --plan FILE`: print what `up` would create (JSON or a listing); create nothing."""
    from emulator.engine.fastpath import EngineOptions
    from emulator.network.plan import network_plan

    if args.file is not None:
        raise InputError("give the topology either as FILE or after --plan, not both")
    topology = _load(args.plan or None)
    plan = network_plan(topology, PLAN_PREFIX, rx_cpus=EngineOptions().receive_cpu_mask())
    if args.json:
        json.dump(plan.to_dict(), sys.stdout, indent=1)
        print()
    else:
        sys.stdout.write(plan.describe())
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from emulator.network.teardown import down_all, teardown
    from emulator.testbed import find_run

    _root_required()
    if args.all:
        problems = down_all(args.state_root)
    else:
        run = find_run(args.run, args.state_root)
        problems = teardown(run)
    for problem in problems:
        print(f"caspian down: {problem}", file=sys.stderr)
    return EXIT_OK if not problems else EXIT_FAILED


def _with_daemon_socket(testbed: Any, node: str, argv: list[str]) -> list[str]:
    """`birdc ...` / `vtysh ...` in a router that runs BIRD / FRR: add its control socket unless given."""
    routing = testbed.state.get_meta("routing") or {}
    command = os.path.basename(argv[0])
    if command == "birdc" and "-s" not in argv[1:] and node in routing.get("sockets", {}):
        return [argv[0], "-s", routing["sockets"][node], *argv[1:]]
    if command == "vtysh" and "--vty_socket" not in argv[1:] and node in routing.get("vty", {}):
        return [argv[0], "--vty_socket", routing["vty"][node], *argv[1:]]
    return argv


def cmd_exec(args: argparse.Namespace) -> int:
    from emulator.engine.fastpath import EngineOptions
    from emulator.network.exec import exec_in_node
    from emulator.testbed import Testbed, find_run, keep_off_engine_cpu

    _root_required()
    argv = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] else args.command
    if not argv:
        raise InputError("no command given", fix="write it after --, e.g. caspian exec europe -- ping asia")
    testbed = Testbed.attach(find_run(args.run, args.state_root))
    argv = _with_daemon_socket(testbed, args.node, argv)
    keep_off_engine_cpu(os.getpid(), EngineOptions())  # inherited by what we exec
    exec_in_node(testbed.node_netns(args.node), argv, testbed.hosts_file)
    return EXIT_FAILED  # not reached: exec replaces this process


def _link_options_from_words(args: argparse.Namespace) -> None:
    """Options written after LINK: argparse leaves them in the netem words
    (REMAINDER); take --direction, --carrier and --run back out of there."""
    words: list[str] = []
    tokens = list(args.words)
    while tokens:
        token = tokens.pop(0)
        name, _, value = token.partition("=")
        if name in ("--direction", "--run"):
            if not value:
                if not tokens:
                    raise InputError(f"{name} needs a value", fix=f"e.g. {name} europe" if name == "--direction" else "")
                value = tokens.pop(0)
            setattr(args, name[2:], value)
        elif token == "--carrier":
            args.carrier = True
        elif token.startswith("--"):
            raise InputError(f"unknown option {token!r} for `caspian link {args.action}`",
                             fix="options: --direction NODE, --carrier, --run PREFIX")
        else:
            words.append(token)
    args.words = words
    if words and args.action != "set":
        raise InputError(f"`caspian link {args.action}` takes no netem words ({' '.join(words)!r})",
                         fix="netem words go with `caspian link set LINK ...`")


def cmd_link(args: argparse.Namespace) -> int:
    from emulator.testbed import Testbed, find_run

    _link_options_from_words(args)
    _root_required()
    testbed = Testbed.attach(find_run(args.run, args.state_root))
    engine = testbed.engine
    if args.action == "show":
        stats = engine.stats()
        names = [args.link] if args.link else list(stats)
        for name in names:
            if name not in stats:
                raise InputError(f"no link named {name!r}", fix=f"links are: {', '.join(stats)}")
            entry = stats[name]
            a, b = entry["ends"]
            print(f"{name}: {a} <-> {b}")
            for label, src, dst in (("a_to_b", a, b), ("b_to_a", b, a)):
                state = "CUT" if entry[label].get("cut", entry["cut"]) else "up"
                print(f"  {src} -> {dst} [{state}]: {entry[label]['params']}")
        return EXIT_OK
    if not args.link:
        raise InputError(f"`caspian link {args.action}` needs a LINK name")
    if args.carrier and args.action != "cut":
        raise InputError("--carrier goes with `caspian link cut`", fix="restore brings carrier back by itself")
    if args.action == "cut":
        engine.cut(args.link, args.direction, carrier=args.carrier)
    elif args.action == "restore":
        engine.restore(args.link, args.direction)
    elif args.action == "set":
        if not args.words:
            raise InputError("nothing to set", fix="give netem words, e.g. caspian link set LINK delay 5ms loss 1%")
        testbed.set(args.link, args.words, args.direction)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from emulator.testbed import Testbed, find_run

    _root_required()
    testbed = Testbed.attach(find_run(args.run, args.state_root))
    stats = testbed.engine.stats()
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        print_stats(stats)
    return EXIT_OK


def print_stats(stats: dict[str, Any]) -> None:
    """A console table of per-link, per-direction counters."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="caspian link counters")
    for column in ("link", "direction", "rx", "tx", "in flight", "dropped (reason)", "kernel drops"):
        table.add_column(column, justify="right" if column not in ("link", "direction", "dropped (reason)") else "left")
    for name, entry in stats.items():
        a, b = entry["ends"]
        for label, (src, dst) in (("a_to_b", (a, b)), ("b_to_a", (b, a))):
            c = entry[label]
            drops = ", ".join(f"{n} {reason}" for reason, n in c["drops"].items() if n) or "0"
            table.add_row(name + (" [CUT]" if entry["cut"] else ""), f"{src}→{dst}", str(c["rx_packets"]),
                          str(c["tx_packets"]), str(c["in_flight"]), drops, str(c["kernel_drops"]))
    Console().print(table)


def cmd_run(args: argparse.Namespace) -> int:
    from emulator.network.signals import install_teardown_handlers
    from emulator.report.console import print_report
    from emulator.report.writers import write_all, write_junit
    from emulator.run import implicit_scenario, run_scenario
    from emulator.scenario.default import DEFAULT_TOPOLOGY_PATH
    from emulator.scenario.loader import load_scenario

    scenario = load_scenario(args.scenario or DEFAULT_TOPOLOGY_PATH)
    if not scenario.traffic and not scenario.assertions:
        scenario = implicit_scenario(scenario)
    if args.repeat_inconclusive < 0:
        raise InputError(f"--repeat-inconclusive is {args.repeat_inconclusive}",
                         fix="give 0 (run once) or how many times to run again after an inconclusive run")
    _root_required()
    report_dir = args.report or os.path.join("reports", scenario.name)
    # SIGTERM/SIGINT become exceptions, so the testbed is torn down on the way out
    restore = install_teardown_handlers()
    try:
        for attempt in range(args.repeat_inconclusive + 1):
            report = _with_progress(scenario, lambda progress: run_scenario(
                scenario, state_root=args.state_root, seed=args.seed, progress=progress))
            if report.verdict != "inconclusive" or attempt == args.repeat_inconclusive:
                break
            reasons = "; ".join(f"{a.metric}: {a.reason}" for a in report.inconclusive)
            print(f"caspian: run {attempt + 1} inconclusive ({reasons}); running again", file=sys.stderr)
    finally:
        restore()
    written = write_all(report, report_dir)
    if args.junit:
        write_junit(report, args.junit)
        written["junit"] = args.junit
    print_report(report, files=written)
    return report.exit_code


def _with_progress(scenario: Any, work: Any) -> Any:
    """Run `work(progress)` under a rich progress bar over the scenario's duration."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[t]}"),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"caspian run {scenario.name}", total=1.0, t="")
        duration_s = scenario.duration_ns / 1e9

        def progress(fraction: float, what: str) -> None:
            bar.update(task, completed=min(1.0, fraction), t=f"{fraction * duration_s:5.1f}/{duration_s:g} s")

        return work(progress)


def cmd_bench(args: argparse.Namespace) -> int:
    from emulator.bench import PARTS, run_bench

    from emulator.network.signals import install_teardown_handlers

    _root_required()
    install_teardown_handlers()  # SIGTERM tears the bench testbed down too
    only = tuple(args.only.split(",")) if args.only else PARTS
    unknown = [part for part in only if part not in PARTS]
    if unknown:
        raise InputError(f"unknown bench part {unknown[0]!r}", fix=f"use a comma list of {', '.join(PARTS)}")
    return run_bench(as_json=args.json, runs=args.runs, duration_s=args.duration, state_root=args.state_root,
                     only=only)


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caspian", description="Packet-level link emulator and testbed.")
    parser.add_argument("--state-root", default=DEFAULT_ROOT, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="build the testbed, measure it, tear it down")
    p.add_argument("scenario", nargs="?", help="scenario file (default: Aktau–Sumgait)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--report", metavar="DIR", help="where report.json and the plots go (default: reports/NAME)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML here (always in the report dir)")
    p.add_argument("--repeat-inconclusive", type=int, default=0, metavar="N",
                   help="run again, up to N times, while the verdict is inconclusive (exit 3)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a topology file without creating anything")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("up", help="build a testbed that stays up until `caspian down`")
    p.add_argument("file", nargs="?")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--plan", metavar="FILE", nargs="?", const="",
                   help=f"print every kernel object `up` would make for FILE (default topology if none; "
                        f"run prefix {PLAN_PREFIX}) and create nothing")
    p.add_argument("--json", action="store_true", help="with --plan: the plan as JSON")
    p.add_argument("--shards", type=int, default=None, metavar="N",
                   help="engine loops sharing the links (default: the file's engine.shards, else 1 on <= 2 CPUs)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove a testbed (or, with --all, every recorded run)")
    p.add_argument("--all", action="store_true", help="every run recorded under the state root")
    p.add_argument("--run", help="run prefix (default: the only one)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("exec", help="run a command inside a node")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.add_argument("--run", help="run prefix (default: the only one)")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("link", help="show or change links live")
    p.add_argument("action", choices=("show", "set", "cut", "restore"))
    p.add_argument("link", nargs="?")
    p.add_argument("words", nargs=argparse.REMAINDER, help="netem words: delay 5ms jitter 1ms loss 1%% rate 1gbit ...")
    p.add_argument("--direction", default="both", help="both (default), a_to_b, b_to_a or the sending node's name")
    p.add_argument("--carrier", action="store_true",
                   help="cut: also take the link's interfaces down in both nodes (loss of light)")
    p.add_argument("--run", help="run prefix (default: the only one)")
    p.set_defaults(func=cmd_link)

    p = sub.add_parser("stats", help="per-link counters")
    p.add_argument("--json", action="store_true")
    p.add_argument("--run", help="run prefix (default: the only one)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("bench", help="the fast path against the kernel bridge on the same veths")
    p.add_argument("--json", action="store_true")
    p.add_argument("--runs", type=int, default=3, help="alternating rounds, and scale runs (medians reported)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    p.add_argument("--only", help="comma list of parts: throughput,delay,rate,memory,scale (default: all)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (InputError, EnvironmentProblem, TestbedError) as exc:
        print(f"caspian: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CaspianError as exc:
        print(f"caspian: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("caspian: interrupted; the testbed was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
