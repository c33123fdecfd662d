"""`caspian` — the command line (tc/ip-like words, Mininet-like verbs).

    caspian run [SCENARIO] [--seed N]        build, measure, tear down
    caspian validate FILE                    check a topology file
    caspian up [FILE] / caspian down [--all] a testbed that stays up
    caspian exec NODE -- CMD...              run anything inside a node
    caspian link show|set|cut|restore LINK [netem words]
    caspian stats [--json | --watch]
    caspian capture LINK [--direction NODE] [-c COUNT] [-w FILE.pcapng]
    caspian bench [--json]

Exit codes: 0 success, 1 a check failed, 3 inconclusive (the run's own
error could have flipped a check: docs/verdicts.md), 2 bad input or environment (one
line on stderr naming the input and the fix).

Whatever happens, a command answers in one line on stderr, never a
traceback: bad input or environment is `caspian: <what and the fix>` (exit
2); an unexpected exception, a bug, is `caspian: internal error: <type>:
<message> (details in <log>)` (exit 1), the full traceback written to a crash
log (`crash_log_dir()`); Ctrl-C is exit 130 and SIGTERM/SIGHUP 128 + the
signal, each with one line, after the testbed was torn down. Control
characters in anything printed are escaped (`\\x1b`), so a file or a tool's
output cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import stat
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn, Sequence

from emulator.errors import CaspianError, EnvironmentProblem, InputError
from emulator.network.state import DEFAULT_ROOT

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: Ctrl-C, as a shell reports a process SIGINT ended
EXIT_INTERRUPTED = 130
#: an error line is cut to this many characters (the crash log keeps it whole)
MAX_LINE_CHARS = 1000
#: crash logs kept in crash_log_dir(): the oldest go first
CRASH_LOGS_KEPT = 20


# ---------------------------------------------------------------- what reaches the terminal

def printable(text: str) -> str:
    """`text` with every non-printable character escaped as Python writes it
    (a newline as `\\n`, ESC as `\\x1b`), so it is one line that cannot
    move the cursor, retitle the terminal or hide what precedes it."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _line(text: str) -> str:
    """One printable line of at most MAX_LINE_CHARS characters."""
    text = printable(text)
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS - 40] + f"...[{len(text) - MAX_LINE_CHARS + 40} more characters]"
    return text


def say(text: str) -> None:
    """Print one line on stderr (escaped); never raises (stderr may be closed)."""
    try:
        print(_line(text), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def printable_data(value: Any) -> Any:
    """A copy of `value` (dataclasses, dicts, lists, tuples) with every string
    made `printable`: for tables printed from data a file or a tool supplied."""
    if isinstance(value, str):
        return printable(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: printable_data(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(printable_data(v) for v in value)
    return value


# ---------------------------------------------------------------- crash logs

def crash_log_dir() -> Path:
    """Where tracebacks of internal errors go: `$XDG_STATE_HOME/caspian`, else
    `~/.local/state/caspian` (the XDG default), else `/tmp/caspian-UID`.

    Not the run's state directory: teardown removes that, and a crash may
    come before there is one.
    """
    state_home = os.environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(state_home):
        return Path(state_home) / "caspian"
    home = os.path.expanduser("~")
    if os.path.isabs(home) and os.path.isdir(home):
        return Path(home) / ".local" / "state" / "caspian"
    return Path("/tmp") / f"caspian-{os.getuid()}"


def _private_dir(path: Path) -> None:
    """Make `path` (mode 0700) or check that it is a real directory of ours:
    a crash log may hold a scenario's text, and /tmp is shared."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{path} is not a directory of uid {os.getuid()}")


def write_crash_log(exc: BaseException, argv: Sequence[str]) -> str:
    """Write the command, the versions and `exc`'s whole traceback to a new
    file in crash_log_dir(); its path. Raises OSError when it cannot."""
    from emulator import __version__

    directory = crash_log_dir()
    _private_dir(directory)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    text = "".join([
        f"caspian {__version__} internal error at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n",
        f"command: caspian {shlex.join(argv)}\n",
        f"python {sys.version.split()[0]}, {os.uname().sysname} {os.uname().release}, cwd {os.getcwd()}\n\n",
        *traceback.format_exception(exc),
    ])
    # escaped line by line as on the terminal: the log is read with `cat` too
    text = "\n".join(printable(line) for line in text.split("\n"))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for n in range(100):  # a new file each time, also for two crashes within a second
        path = directory / f"crash-{stamp}-{os.getpid()}{f'-{n}' if n else ''}.log"
        try:
            fd = os.open(path, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(f"no free crash log name in {directory}")
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)
    _prune_crash_logs(directory)
    return str(path)


def _prune_crash_logs(directory: Path) -> None:
    """Keep the newest CRASH_LOGS_KEPT crash logs (names sort by time)."""
    logs = sorted(directory.glob("crash-*.log"))
    for old in logs[:-CRASH_LOGS_KEPT]:
        try:
            old.unlink()
        except OSError:
            pass


def _load(path: str | None) -> Any:
    from emulator.scenario.default import default_topology
    from emulator.scenario.loader import load_topology

    return load_topology(path) if path else default_topology()


def _root_required() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("caspian needs root for network namespaces and AF_PACKET (run it with sudo)")


# ---------------------------------------------------------------- commands

def cmd_validate(args: argparse.Namespace) -> int:
    from emulator.network.addressing import address_plan

    topology = _load(args.file)
    # the address plan is pure and quick: a file whose addresses cannot be
    # assigned is refused here, not only when `up` or `run` builds it
    address_plan(topology)
    print(printable(f"{args.file}: valid ({len(topology.nodes)} nodes, {len(topology.links)} links)"))
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
        say(f"caspian down: {problem}")
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
    _root_required()
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

    _root_required()
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


def cmd_run(args: argparse.Namespace) -> int:
    from emulator.network.signals import install_teardown_handlers
    from emulator.report.console import print_report
    from emulator.report.writers import default_report_dir, write_all, write_junit
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
    # the name comes from the file: only its slug, under reports/, chooses the
    # place (`name: ../../x` or `name: /etc` must not); --report DIR any place
    report_dir = Path(args.report) if args.report else default_report_dir(scenario.name)
    _writable_report_dir(report_dir)  # before a run that would end with nowhere to write
    # SIGTERM/SIGINT become exceptions, so the testbed is torn down on the way out
    restore = install_teardown_handlers()
    try:
        for attempt in range(args.repeat_inconclusive + 1):
            report = _with_progress(scenario, lambda progress: run_scenario(
                scenario, state_root=args.state_root, seed=args.seed, progress=progress,
                capture_dir=str(report_dir.absolute()) if scenario.capture else None))
            if report.verdict != "inconclusive" or attempt == args.repeat_inconclusive:
                break
            reasons = "; ".join(f"{a.metric}: {a.reason}" for a in report.inconclusive)
            say(f"caspian: run {attempt + 1} inconclusive ({reasons}); running again")
    finally:
        restore()
    try:
        written = write_all(report, report_dir)
        if args.junit:
            write_junit(report, args.junit)
            written["junit"] = args.junit
    except OSError as exc:
        raise InputError(f"cannot write the report: {exc.strerror or exc} ({exc.filename or report_dir})",
                         fix="give --report (and --junit) a place you can write") from exc
    print_report(printable_data(report), files=printable_data(written))
    return report.exit_code


def _writable_report_dir(directory: Path) -> None:
    """InputError unless the report directory can be made and written, checked
    before the run (nothing is created: a run that fails leaves no empty directory)."""
    probe = directory.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the nearest existing ancestor is where it would be made
    if not probe.is_dir():
        raise InputError(f"cannot make the report directory {str(directory)!r}: {str(probe)!r} is not a directory",
                         fix="give --report DIR a directory you can write")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the report to {str(directory)!r}: {str(probe)!r} is not writable",
                         fix="give --report DIR a directory you can write")


def _with_progress(scenario: Any, work: Any) -> Any:
    """Run `work(progress)` under a rich progress bar over the scenario's duration."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[t]}"),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(escape(printable(f"caspian run {scenario.name}")), total=1.0, t="")
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

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one escaped line and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        say(f"{self.prog}: {message} (see `{self.prog} --help`)")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="caspian", description="Packet-level link emulator and testbed.")
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

    p = sub.add_parser("capture", help="capture a link of a running testbed into pcapng (docs/capture.md)")
    p.add_argument("link", help="the link to capture")
    p.add_argument("--direction", metavar="NODE", help="only the frames NODE sends into the link (default: both ways)")
    p.add_argument("-c", "--count", type=int, help="stop after COUNT frames (in, out and drops all count)")
    p.add_argument("-w", "--write", metavar="FILE", help="the pcapng file (default: LINK.pcapng)")
    p.add_argument("-s", "--snaplen", type=int, default=128,
                   help="bytes kept of each frame (default 128: every header, a whole probe; 0: whole frames)")
    p.add_argument("--run", help="run prefix (default: the only one)")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("stats", help="per-link counters")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="a live table of rates, drops and queues, each second (Ctrl-C leaves)")
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
    """Run one command; its exit code. Every failure is one line on stderr (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    root = getattr(args, "state_root", DEFAULT_ROOT)
    before = _run_prefixes(root)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # stdout went away (`caspian stats | head -1`): nothing more to say there,
        # and a testbed `caspian up` started stays up as asked
        _silence_stdout()
        return EXIT_FAILED
    except (KeyboardInterrupt, SystemExit, Exception) as exc:
        code = _answer(exc, args, argv, root, before)
    _tear_down_own_runs(root, before)
    return code


def _answer(exc: BaseException, args: argparse.Namespace, argv: Sequence[str], root: str,
            before: set[str]) -> int:
    """Say in one line on stderr how the command ended with `exc`; its exit code.

    Re-raises a SystemExit that is not a signal's (an exit code chosen on purpose).
    """
    from emulator.network.signals import Terminated

    if isinstance(exc, SystemExit) and not isinstance(exc, Terminated):
        raise exc
    stop = exc if isinstance(exc, (KeyboardInterrupt, Terminated)) else _signal_behind(exc)
    known = isinstance(exc, CaspianError)  # InputError, EnvironmentProblem, TestbedError ...
    where = ""
    if not known and exc is not stop:  # a bug, or a bug on the way out: keep its traceback
        try:
            where = f"details in {write_crash_log(exc, argv)}"
        except OSError as log_error:
            where = f"no crash log: {log_error}"
    if stop is not None:
        name = "SIGINT" if isinstance(stop, KeyboardInterrupt) else stop.signal_name
        line = f"caspian: {'interrupted' if name == 'SIGINT' else f'stopped by {name}'}"
        line += _cleanup_note(args, root, before)
        if stop is not exc:
            # the signal came first and this error on its way out (inside a lock
            # it interrupted, a request it cut short): the user asked to stop
            line += f" (then {type(exc).__name__}: {exc}" + (f"; {where})" if where else ")")
        say(line)
        return EXIT_INTERRUPTED if name == "SIGINT" else 128 + stop.signum
    if known:
        say(f"caspian: {exc}")
        return EXIT_BAD_INPUT
    say(f"caspian: internal error: {type(exc).__name__}: {exc} ({where})")
    return EXIT_FAILED


def _signal_behind(exc: BaseException) -> Any:
    """The KeyboardInterrupt or Terminated that `exc` was raised while handling, if any."""
    from emulator.network.signals import Terminated

    seen: set[int] = set()
    cause = exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (KeyboardInterrupt, Terminated)):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None


def _run_prefixes(root: str) -> set[str]:
    """The runs recorded under `root` now (one listdir; none if it is missing)."""
    try:
        return set(os.listdir(root))
    except OSError:
        return set()


def _own_runs(root: str, before: set[str]) -> list[Any]:
    """Runs this process made (its pid as builder) that are still recorded:
    what a failed command left. Never one that existed before it began."""
    from emulator.network.state import RunState

    if not os.path.isdir(root):
        return []
    try:
        runs = RunState.all(root)
    except (OSError, CaspianError, ValueError):
        return []
    return [run for run in runs if run.prefix not in before and run.meta.get("builder_pid") == os.getpid()]


#: the commands that build a testbed of their own
_BUILDING_COMMANDS = ("run", "up", "bench")


def _cleanup_note(args: argparse.Namespace, root: str, before: set[str]) -> str:
    """How the testbed was left, for the interrupted/stopped line."""
    left = _own_runs(root, before)
    if left:
        return "; removing what is left of " + ", ".join(run.prefix for run in left)
    return "; the testbed was removed" if args.command in _BUILDING_COMMANDS else ""


def _tear_down_own_runs(root: str, before: set[str]) -> None:
    """After a failure: remove whatever run this command made and is still there.

    The commands tear down on their own way out; this catches what a bug
    between building and that way out would leave. Problems go on stderr,
    one line each, with what to run to retry.
    """
    from emulator.network.teardown import teardown

    for run in _own_runs(root, before):
        try:
            problems = teardown(run)
        except Exception as exc:  # noqa: BLE001 - the command's own error has been told already
            problems = [f"{type(exc).__name__}: {exc}"]
        for problem in problems:
            say(f"caspian: {run.prefix}: {problem} (retry with `caspian down --run {run.prefix}`)")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's exit flush finds no broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
