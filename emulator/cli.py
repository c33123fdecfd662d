"""`caspian` — the command line (tc/ip-like words, Mininet-like verbs).

    caspian run [SCENARIO] [--seed N]        build, measure, tear down
    caspian validate [--plan] FILE           check a topology file (and print both plans)
    caspian up [FILE] / caspian down [--all] a testbed that stays up
    caspian exec NODE -- CMD...              run anything inside a node
    caspian link show|set|cut|restore LINK [netem words]
    caspian stats [--json | --watch]
    caspian capture LINK [--direction NODE] [-c COUNT] [-w FILE.pcapng]
    caspian bench [--json]
    caspian agent --machine NAME --secret-file FILE   serve a run across machines
    caspian validate FILE --agents FILE --secret-file FILE   reach the agents, measure the underlay
    caspian deploy k8s FILE --out DIR        a topology across machines as Kubernetes manifests

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
import json
import os
import shlex
import stat
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn, Sequence

from emulator.errors import CaspianError, InputError
from emulator.cli_multihost import add_parsers as add_multihost_parsers, add_validate_options, cmd_preflight
from emulator.cli_testbed import cmd_capture, cmd_exec, cmd_link, cmd_stats
from emulator.network.state import DEFAULT_ROOT
# the terminal contract; printable_data is also this module's API (tests, plugins)
from emulator.terminal import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, printable, printable_data,
                               root_required, say)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main", "printable",
           "printable_data"]

#: crash logs kept in crash_log_dir(): the oldest go first
CRASH_LOGS_KEPT = 20


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


# ---------------------------------------------------------------- commands

def cmd_validate(args: argparse.Namespace) -> int:
    from emulator.network.addressing import address_plan

    if args.agents:
        return cmd_preflight(args)
    topology = _load(args.file)
    # the address plan is pure and quick: a file whose addresses cannot be
    # assigned is refused here, not only when `up` or `run` builds it
    address_plan(topology)
    if args.plan:
        return _print_plans(args)
    print(printable(f"{args.file}: valid ({len(topology.nodes)} nodes, {len(topology.links)} links)"))
    return EXIT_OK


def _print_plans(args: argparse.Namespace) -> int:
    """`caspian validate --plan FILE`: the network plan (what `up` creates) and the
    run plan (what `run` does, in order); both pure, nothing is created."""
    from emulator.engine.fastpath import EngineOptions
    from emulator.network.plan import network_plan
    from emulator.run import compile_run, implicit_scenario
    from emulator.scenario.loader import load_scenario

    scenario = load_scenario(args.file)
    if not scenario.traffic and not scenario.assertions:
        scenario = implicit_scenario(scenario)   # as `caspian run` does
    network = network_plan(scenario.topology, PLAN_PREFIX, rx_cpus=EngineOptions().receive_cpu_mask())
    run = compile_run(scenario)
    if args.json:
        json.dump({"network": network.to_dict(), "run": run.to_dict()}, sys.stdout, indent=1)
        print()
    else:
        text = network.describe() + run.describe()
        sys.stdout.write("".join(printable(line) + "\n" for line in text.splitlines()))
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    if args.plan is not None:
        return _print_plan(args)
    from emulator.network.signals import install_teardown_handlers
    from emulator.testbed import Testbed

    topology = _load(args.file)
    root_required()
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
    if testbed.machines is not None:
        from emulator.report.console import placement_line

        print(f"  {placement_line(testbed.placement_summary())}")
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

    root_required()
    if args.all:
        problems = down_all(args.state_root)
    else:
        run = find_run(args.run, args.state_root)
        problems = teardown(run)
    for problem in problems:
        say(f"caspian down: {problem}")
    return EXIT_OK if not problems else EXIT_FAILED


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
    root_required()
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

    root_required()
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
    p.add_argument("--plan", action="store_true",
                   help="also print the network plan and the run plan (what up and run would do)")
    p.add_argument("--json", action="store_true", help="with --plan: both plans as JSON")
    add_validate_options(p)
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
    add_multihost_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Every failure is one line on stderr (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sandbox = _rootless_sandbox(args)
    except CaspianError as exc:
        say(f"caspian: {exc}")
        return EXIT_BAD_INPUT
    root = getattr(args, "state_root", DEFAULT_ROOT)
    before = _run_prefixes(root)
    try:
        code = int(args.func(args))
    except BrokenPipeError:
        # stdout went away (`caspian stats | head -1`): nothing more to say there,
        # and a testbed `caspian up` started stays up as asked
        _silence_stdout()
        code = EXIT_FAILED
    except (KeyboardInterrupt, SystemExit, Exception) as exc:
        code = _answer(exc, args, argv, root, before)
        _tear_down_own_runs(root, before)
    if sandbox is not None:
        from emulator.network.sandbox import release_if_idle

        problem = release_if_idle(sandbox)
        if problem:
            say(f"caspian: {problem}")
    return code


#: the commands that build or reach a testbed: rootless, they run in the user's sandbox
def _namespace_commands() -> tuple[Any, ...]:
    return (cmd_run, cmd_up, cmd_down, cmd_exec, cmd_link, cmd_capture, cmd_stats, cmd_bench)


def _rootless_sandbox(args: argparse.Namespace) -> Any:
    """Without root, join the user's sandbox (emulator.network.sandbox) before a
    command that needs namespaces, and record its runs in the user's runtime
    directory; the Sandbox, or None as root or for a command that needs none."""
    from emulator.network import sandbox

    if not sandbox.needed() or getattr(args, "func", None) not in _namespace_commands():
        return None
    if args.func is cmd_up and args.plan is not None:
        return None
    joined = sandbox.enter()
    if args.state_root == DEFAULT_ROOT:
        args.state_root = joined.runs_root
    return joined


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
        return EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) or name == "SIGINT" else 128 + stop.signum
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
