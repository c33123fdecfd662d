"""The commands that work on a testbed that is up: exec, link, capture, stats."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, NoReturn

from emulator.errors import InputError
from emulator.terminal import EXIT_FAILED, EXIT_OK, printable_data, root_required, say

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

    root_required()
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
    root_required()
    testbed = Testbed.attach(find_run(args.run, args.state_root))
    engine = testbed.engine
    if args.action == "show":
        stats = printable_data(engine.stats())
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


def cmd_capture(args: argparse.Namespace) -> int:
    """Capture one link of a running testbed into pcapng until -c frames or Ctrl-C/SIGTERM (docs/capture.md)."""
    from emulator.network.signals import install_teardown_handlers
    from emulator.testbed import Testbed, find_run

    if args.snaplen != 0 and not 64 <= args.snaplen <= 65535:
        raise InputError(f"-s is {args.snaplen}", fix="use 0 for whole frames, or 64..65535 bytes")
    if args.count is not None and args.count < 1:
        raise InputError(f"-c is {args.count}", fix="give a count of 1 or more frames, or leave -c out")
    path = Path(args.write or f"{args.link}.pcapng").absolute()
    if path.is_dir():
        raise InputError(f"-w {path} is a directory", fix="give a file name, e.g. -w cable.pcapng")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot write {path}: {path.parent} is not a writable directory",
                         fix="give -w a path in a writable directory")
    root_required()
    testbed = Testbed.attach(find_run(args.run, args.state_root))
    links = list(testbed.engine.stats())
    if args.link not in links:
        _no_link(links, args.link)
    target = {"link": args.link, "direction": args.direction or "both"}
    started = testbed.engine.capture_start([target], str(path), count=args.count, snaplen=args.snaplen)
    say(f"caspian: capturing {args.link} into {path} ({', '.join(started['interfaces'])}); Ctrl-C stops")
    # a signal ends the capture as Ctrl-C does: the file is closed complete either way
    restore = install_teardown_handlers()
    try:
        while testbed.engine.capture_status()["running"]:
            time.sleep(0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        restore()
        summary = testbed.engine.capture_stop()
    say(f"caspian capture: {summary['frames']} frames to {summary['path']} "
        f"({summary['lost']} not recorded: the capture ring was full)")
    return EXIT_OK


def _no_link(names: list[str], name: str) -> NoReturn:
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    raise InputError(f"no link called {name!r}",
                     fix=(f"did you mean {close[0]!r}? " if close else "") + f"links: {', '.join(names)}")


def cmd_stats(args: argparse.Namespace) -> int:
    from emulator.testbed import Testbed, find_run

    root_required()
    testbed = Testbed.attach(find_run(args.run, args.state_root))
    if args.watch:
        from emulator.report.live import watch

        watch(lambda: printable_data(testbed.engine.stats()))
        return EXIT_OK
    stats = testbed.engine.stats()
    if args.json:
        print(json.dumps(stats, indent=1))  # JSON escapes control characters itself
    else:
        print_stats(printable_data(stats))
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
