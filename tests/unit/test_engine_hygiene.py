"""The compiled engine's own hygiene: specific exceptions, all-or-nothing add_link.

No root needed: a link's ends here are Unix datagram sockets (the engine checks
that each end is an open socket; the loop forwards between any two). The
engine counts the C blocks it holds (`_engine.allocated_blocks()`) and can be
told to fail its n-th allocation (`_engine.fail_allocation_after(n)`), so every
step of add_link is made to fail in turn and must leave the engine as it was.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulator import _engine
from emulator.errors import (EngineDirectionError, EngineError, EngineParamError, EngineRangeError,
                             EngineSocketError, EngineStateError)
from emulator.model.linkparams import LinkParams

SLOTS = 16  # the smallest pool: these tests allocate, they do not forward


@pytest.fixture
def ends() -> Iterator[tuple[int, int]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        yield a.fileno(), b.fileno()


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    """No test leaves the allocation-failure hook armed for the next."""
    yield
    _engine.fail_allocation_after(0)


def blocks() -> int:
    """The engine module's C blocks once garbage is collected: engines of earlier
    tests, held in cycles by their tracebacks, must not be freed mid-count."""
    gc.collect()
    return _engine.allocated_blocks()


def params(**fields: Any) -> dict[str, Any]:
    engine = LinkParams(delay_ns=1_000_000).to_engine()
    engine.update(fields)
    return engine


def add(engine: Any, ends: tuple[int, int], a_to_b: dict[str, Any] | None = None,
        b_to_a: dict[str, Any] | None = None, max_frame: int = 1518) -> int:
    return engine.add_link(ends[0], ends[1], max_frame, a_to_b or params(), b_to_a or params(), 1, 2)


def test_every_allocation_step_of_add_link_can_fail_and_leaves_nothing(ends: tuple[int, int]) -> None:
    engine = _engine.Engine(SLOTS)
    assert add(engine, ends) == 0  # a link already there: its arrays are copied, then replaced
    before = blocks()
    failures = 0
    for n in range(1, 200):
        _engine.fail_allocation_after(n)
        try:
            index = add(engine, ends, b_to_a=params(trace_ms=[1, 2, 4]))
        except MemoryError:
            failures += 1
            assert engine.n_links == 1, f"allocation {n} failed: the link count moved"
            assert blocks() == before, f"allocation {n} failed: blocks leaked"
            continue
        _engine.fail_allocation_after(0)
        # the first n that no longer fails: every allocation add_link makes came before it
        assert index == 1 and engine.n_links == 2
        break
    else:
        pytest.fail("add_link still failed after 200 allocations")
    # params a and b (+ b's trace), 3 arrays, 6 blocks per direction
    assert failures >= 2 + 1 + 3 + 12
    assert [d["rx_packets"] for d in engine.stats()] == [0, 0, 0, 0]  # the snapshot grew with the links
    del engine
    assert blocks() < before


def test_refused_arguments_leave_the_engine_as_it_was(ends: tuple[int, int]) -> None:
    engine = _engine.Engine(SLOTS)
    before = blocks()
    closed_fd = os.dup(ends[0])
    os.close(closed_fd)
    refused: list[tuple[type[Exception], type[Exception], dict[str, Any]]] = [
        (EngineParamError, ValueError, {"max_frame": 13}),
        (EngineParamError, ValueError, {"b_to_a": params(delay_ns=-1)}),    # after a's Params exist
        (EngineRangeError, OverflowError, {"b_to_a": params(rate_bps=2**64)}),
        (EngineParamError, ValueError, {"b_to_a": params(distribution=9)}),
        (EngineParamError, ValueError, {"b_to_a": {"delay_ns": 0}}),       # keys missing
        (EngineRangeError, OverflowError, {"b_to_a": params(trace_ms=[1, 2**62])}),
    ]
    for specific, builtin, kwargs in refused:
        with pytest.raises(specific) as info:
            add(engine, ends, **kwargs)
        assert isinstance(info.value, builtin) and isinstance(info.value, EngineError)
        assert engine.n_links == 0 and blocks() == before, kwargs
    with pytest.raises(EngineSocketError) as bad_fd:
        engine.add_link(ends[0], closed_fd, 1518, params(), params(), 1, 2)
    assert isinstance(bad_fd.value, OSError) and "link end b" in str(bad_fd.value)
    with pytest.raises(EngineParamError, match="two sockets"):
        engine.add_link(ends[0], ends[0], 1518, params(), params(), 1, 2)
    assert engine.n_links == 0 and blocks() == before
    assert add(engine, ends) == 0  # and a good retry works


def test_engine_errors_are_specific_and_keep_their_builtin(ends: tuple[int, int]) -> None:
    with pytest.raises(EngineParamError, match="batch 0"):
        _engine.Engine(SLOTS, batch=0)
    with pytest.raises(EngineParamError, match="slots_per_direction 8"):
        _engine.Engine(8)
    engine = _engine.Engine(SLOTS)
    with pytest.raises(EngineStateError, match="no links") as info:
        engine.run()
    assert isinstance(info.value, RuntimeError)
    add(engine, ends)
    with pytest.raises(EngineDirectionError) as index:
        engine.set_outage(2, True)
    assert isinstance(index.value, IndexError)
    with pytest.raises(EngineParamError, match="time order"):
        engine.set_schedule(0, [(2, "cut", None), (1, "restore", None)])
    with pytest.raises(EngineParamError, match="unknown scheduled change"):
        engine.set_schedule(0, [(1, "flap", None)])
    with pytest.raises(EngineStateError, match="capture_open"):
        engine.set_capture(0, 0)
    with pytest.raises(EngineParamError, match="power of two"):
        engine.capture_open(1000, 128)
    with pytest.raises(EngineParamError):
        engine.set_fidelity(0, 0, 1)
    with pytest.raises(EngineParamError):
        engine.set_probe_tap(0, [("middle", 5000)], 8)
    with pytest.raises(EngineRangeError):
        engine.set_params(1, params(delay_ns=2**63))


def test_a_cut_is_per_direction(ends: tuple[int, int]) -> None:
    engine = _engine.Engine(SLOTS)
    add(engine, ends)
    engine.set_outage(1, True)
    assert [engine.outage(d) for d in (0, 1)] == [False, True]
    engine.set_outage(0, True)
    engine.set_outage(1, False)
    assert [engine.outage(d) for d in (0, 1)] == [True, False]


def test_counters_have_one_entry_per_drop_reason(ends: tuple[int, int]) -> None:
    engine = _engine.Engine(SLOTS)
    add(engine, ends)
    for direction in engine.stats():
        assert tuple(direction["drops"]) == _engine.DROP_REASON_NAMES
        assert tuple(direction["drop_bytes"]) == _engine.DROP_REASON_NAMES
        assert len(direction["release_lateness"]["histogram"]) == 16


def test_a_failed_offline_run_frees_its_direction() -> None:
    before = blocks()
    with pytest.raises(EngineParamError, match="outside"):
        _engine.offline_run(params(), [0], [70_000])
    with pytest.raises(EngineParamError, match="back in time"):
        _engine.offline_run(params(), [5, 1], [64, 64])
    assert blocks() == before


def test_a_running_engine_refuses_a_second_run_and_frees_everything_after() -> None:
    before = blocks()
    a_node, a_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b_node, b_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a_node, a_end, b_node, b_end:
        engine = _engine.Engine(64)
        engine.add_link(a_end.fileno(), b_end.fileno(), 1518, params(), params(), 1, 2)
        engine.capture_open(1 << 16, 128)
        engine.set_capture(0, 0)
        loop = threading.Thread(target=engine.run, daemon=True)
        loop.start()
        try:
            deadline = time.monotonic() + 10
            while not engine.running and time.monotonic() < deadline:
                time.sleep(0.005)
            with pytest.raises(EngineStateError, match="already running") as info:
                engine.run()
            assert isinstance(info.value, RuntimeError)
            with pytest.raises(EngineStateError, match="before run"):
                engine.add_link(a_end.fileno(), b_end.fileno(), 1518, params(), params(), 1, 2)
            for _ in range(3):
                a_node.send(bytes(60))
            b_node.settimeout(10)
            assert [len(b_node.recv(2048)) for _ in range(3)] == [60, 60, 60]
            # each frame recorded in (at arrival) and out (at release): pcapng EPBs, type 6
            while engine.capture_status()["blocks"] < 6 and time.monotonic() < deadline:
                time.sleep(0.005)
            captured = engine.capture_drain()
            assert engine.capture_status()["blocks"] == 6 and struct.unpack_from("<I", captured)[0] == 6
            assert engine.capture_drain() == b""  # drained: nothing new
        finally:
            engine.stop()
            loop.join(timeout=10)
        assert not loop.is_alive()
        assert engine.stats()[0]["tx_packets"] == 3
        del engine
    assert blocks() == before
