"""Signals during teardown are held back until it is done (emulator.network.signals.shielded).

Real signals to this very process: each test installs the handlers it needs
and puts the previous ones back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from emulator.network.signals import Terminated, install_teardown_handlers, shielded
from emulator.network.state import RunState
from emulator.network.teardown import teardown


@pytest.fixture
def handlers() -> Iterator[None]:
    """caspian's teardown handlers for the test (SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated)."""
    restore = install_teardown_handlers()
    try:
        yield
    finally:
        restore()


@pytest.mark.parametrize("sig, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_in_a_shielded_block_arrives_after_it(sig: int, raised: type, handlers: None) -> None:
    reached_end = False
    with pytest.raises(raised):
        with shielded():
            os.kill(os.getpid(), sig)
            reached_end = True  # not cut short
    assert reached_end


def test_terminated_is_a_system_exit_with_the_shell_code() -> None:
    exc = Terminated(signal.SIGTERM)
    assert isinstance(exc, SystemExit) and exc.code == 143 and exc.signal_name == "SIGTERM"


def test_a_signal_still_arrives_when_the_block_raised(handlers: None) -> None:
    with pytest.raises(Terminated) as info:
        with shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            raise ValueError("the body's own error")
    assert isinstance(info.value.__context__, ValueError)


def test_shields_nest_and_the_handlers_come_back(handlers: None) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(Terminated):
        with shielded():
            with shielded():
                os.kill(os.getpid(), signal.SIGTERM)
            # the inner block handed it to the outer one, which still holds it
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_no_signal_no_change(handlers: None) -> None:
    with shielded():
        value = 42
    assert value == 42


def test_teardown_finishes_before_the_signal_arrives(tmp_path: Path, handlers: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM in the middle of removing a run's files: every file still goes, then Terminated."""
    run = RunState.create(str(tmp_path / "runs"))
    paths = []
    for k in range(3):
        path = tmp_path / f"file{k}"
        path.write_text("x")
        run.record("file", path=str(path))
        paths.append(path)
    real_unlink = os.unlink
    calls = []

    def unlink_then_signal(path: str, *args: object, **kwargs: object) -> None:
        calls.append(path)
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # lands between two files

    monkeypatch.setattr("emulator.network.teardown.os.unlink", unlink_then_signal)
    with pytest.raises(Terminated):
        teardown(run)
    monkeypatch.undo()
    assert not any(path.exists() for path in paths)
    assert not os.path.exists(run.dir)
