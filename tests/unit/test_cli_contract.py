"""Every `caspian` command answers in one line, never a traceback (no root needed).

Each command's function is replaced by one that fails in a given way; main()
must turn that into one escaped line on stderr, the documented exit code, a
crash log with the whole traceback for a bug, and a teardown of anything the
command had made.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from emulator import cli
from emulator.errors import InputError, TestbedError
from emulator.network.signals import Terminated
from emulator.network.state import RunState

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def crash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Crash logs go under this test's directory ($XDG_STATE_HOME/caspian)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    return tmp_path / "state-home" / "caspian"


def run_failing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: Callable[..., Any],
                *argv: str) -> tuple[int, str, str]:
    """main() on `caspian validate x` with the command replaced by `failure`: (code, stdout, stderr)."""
    monkeypatch.setattr(cli, "cmd_validate", failure)
    code = cli.main(["validate", "x", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def raising(exc: BaseException) -> Callable[[Any], int]:
    def command(args: Any) -> int:
        raise exc
    return command


def test_a_bug_is_one_line_and_a_crash_log(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           crash_home: Path) -> None:
    code, out, err = run_failing(monkeypatch, capsys, raising(ValueError("bad \x1b]0;title\x07 value\nline two")))
    assert code == cli.EXIT_FAILED and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("caspian: internal error: ValueError: bad \\x1b]0;title\\x07 value\\nline two (details in ")
    assert "\x1b" not in err and "\x07" not in err
    (log,) = crash_home.glob("crash-*.log")
    assert f"(details in {log})" in err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "ValueError" in text
    assert "command: caspian validate x" in text
    assert "\x1b" not in text  # escaped there too: the log is read with cat
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(crash_home.stat().st_mode) == 0o700


def test_without_a_place_for_the_log_it_is_still_one_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # caspian/ cannot be made inside a file
    code, _, err = run_failing(monkeypatch, capsys, raising(KeyError("x")))
    assert code == cli.EXIT_FAILED and err.count("\n") == 1
    assert err.startswith("caspian: internal error: KeyError: 'x' (no crash log: ")


def test_crash_logs_are_pruned(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                               crash_home: Path) -> None:
    monkeypatch.setattr(cli, "CRASH_LOGS_KEPT", 3)
    for _ in range(5):
        run_failing(monkeypatch, capsys, raising(RuntimeError("again")))
    assert len(list(crash_home.glob("crash-*.log"))) == 3


@pytest.mark.parametrize("exc, code, line", [
    (InputError("bad \x1b[2J input", fix="do \x07 this"), 2, "caspian: bad \\x1b[2J input (do \\x07 this)"),
    (TestbedError("engine gone"), 2, "caspian: engine gone"),
    (KeyboardInterrupt(), 130, "caspian: interrupted"),
    (Terminated(15), 143, "caspian: stopped by SIGTERM"),
    (Terminated(1), 129, "caspian: stopped by SIGHUP"),
])
def test_each_kind_of_end_is_one_line_with_its_code(exc: BaseException, code: int, line: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], crash_home: Path) -> None:
    got, out, err = run_failing(monkeypatch, capsys, raising(exc))
    assert (got, out, err) == (code, "", line + "\n")
    assert not crash_home.exists()  # no crash log for what is not a bug


def test_an_error_on_the_way_out_of_a_signal_is_told_as_the_signal(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], crash_home: Path) -> None:
    """SIGTERM inside a lock's internals surfaces as a RuntimeError: the user asked to stop."""
    def command(args: Any) -> int:
        try:
            raise Terminated(15)
        except Terminated:
            raise RuntimeError("release unlocked lock")

    code, _, err = run_failing(monkeypatch, capsys, command)
    assert code == 143 and err.count("\n") == 1
    assert err.startswith("caspian: stopped by SIGTERM (then RuntimeError: release unlocked lock; details in ")


def test_a_chosen_exit_passes_through(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "cmd_validate", raising(SystemExit(7)))
    with pytest.raises(SystemExit) as info:
        cli.main(["validate", "x"])
    assert info.value.code == 7


def test_a_closed_stdout_is_no_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_silence_stdout", lambda: None)  # keep pytest's capture in place
    code, out, err = run_failing(monkeypatch, capsys, raising(BrokenPipeError()))
    assert (code, err) == (cli.EXIT_FAILED, "")


@pytest.mark.parametrize("argv", [["bogus\x1b[2J"], ["validate"], ["run", "--seed", "x\x07"], []])
def test_usage_errors_are_one_escaped_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("caspian"), err
    assert "\x1b" not in err and "\x07" not in err and "--help" in err


def test_what_a_failed_command_made_is_torn_down(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, crash_home: Path) -> None:
    """A bug between building and the command's own cleanup: main() still removes the run.

    A run recorded before the command began (another `caspian up`) is left alone.
    """
    root = str(tmp_path / "runs")
    earlier = RunState.create(root)
    made_file = tmp_path / "made-by-the-run"

    def command(args: Any) -> int:
        run = RunState.create(root)
        made_file.write_text("x")
        run.record("file", path=str(made_file))
        raise AttributeError("a bug after the build")

    monkeypatch.setattr(cli, "cmd_validate", command)
    code = cli.main(["--state-root", root, "validate", "x"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED and err.count("\n") == 1, err
    assert not made_file.exists()
    assert [run.prefix for run in RunState.all(root)] == [earlier.prefix]


def test_validate_refuses_addresses_the_plan_cannot_assign(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "collide\x1b[31m.yaml"
    path.write_text("nodes:\n  left: {role: host}\n  right: {role: host}\n"
                    "links:\n  left-right:\n    ends: [left, right]\n"
                    "    addresses: {left: [198.18.0.1/29, \"2001:2:0:ffff::1/64\"]}\n")
    code = cli.main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "no IPv6 loopback address is left" in err and "\x1b" not in err


def test_validate_escapes_the_file_name_it_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok\x1b]0;x\x07.yaml"
    path.write_text("nodes:\n  left: {role: host}\n")
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "ok\\x1b]0;x\\x07.yaml: valid" in out


def test_printable_data_escapes_every_string_of_a_report() -> None:
    from tests.unit.test_report import make_report

    report = make_report(errors=["tool said \x1b[2J"])
    shown = cli.printable_data(report)
    assert shown.errors == ["tool said \\x1b[2J"] and report.errors == ["tool said \x1b[2J"]
    assert type(shown) is type(report) and shown.metrics == report.metrics


def test_a_real_process_shows_no_traceback(tmp_path: Path) -> None:
    """The whole path through `python -m`: one line, exit 1, the log named."""
    code = ("import sys; from emulator import cli\n"
            "def boom(args): raise ZeroDivisionError('in a subprocess')\n"
            "cli.cmd_validate = boom\n"
            "sys.exit(cli.main(['validate', 'x']))\n")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "internal error: ZeroDivisionError: in a subprocess" in done.stderr
    assert str(tmp_path / "caspian") in done.stderr
