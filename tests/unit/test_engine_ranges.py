"""Parameters the engine cannot hold are an InputError naming the link, not an OverflowError.

LinkParams and the loader refuse such values already; these tests force a
value past them (as a future code path might) to check the last gate before
the C conversion in cext/params.pxi.
"""

from __future__ import annotations

import pytest

from emulator import _engine
from emulator.engine.fastpath import LinkSpec
from emulator.engine.ranges import ENGINE_RANGES, engine_params
from emulator.errors import InputError
from emulator.model.linkparams import LinkParams


def forced(**values: object) -> LinkParams:
    """LinkParams with `values` set past its own checks."""
    params = LinkParams(delay_ns=1_000_000)
    for name, value in values.items():
        object.__setattr__(params, name, value)
    return params


def test_in_range_parameters_pass_unchanged() -> None:
    params = LinkParams(delay_ns=1_910_000, jitter_ns=10_000, rate_bps=10**9, duplicate=1.0, corrupt=1.0, reorder=1.0)
    assert engine_params(params, "link x") == params.to_engine()


@pytest.mark.parametrize("field, value, shown", [
    ("delay_ns", 2**64, "delay 18446744073.709551616s (18446744073709551616 ns)"),
    ("delay_ns", ENGINE_RANGES["delay_ns"][1] + 1, "delay"),
    ("jitter_ns", 2**63, "jitter"),
    ("rate_bps", 2**70, "rate"),
    ("limit_packets", 2**63, "limit"),
    ("overhead_bytes", -1, "overhead -1"),
    ("trace_ms", (1, 2**62), "trace 4611686018427387904 ms"),
])
def test_out_of_range_is_an_input_error_naming_link_and_value(field: str, value: object, shown: str) -> None:
    with pytest.raises(InputError) as info:
        engine_params(forced(**{field: value}), "link aktau-sumgait a_to_b")
    message = str(info.value)
    assert message.startswith("link aktau-sumgait a_to_b: ") and shown in message, message
    assert "outside the engine's range" in message


@pytest.mark.parametrize("field", ["duplicate", "corrupt", "reorder", "jitter_correlation"])
@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.1])
def test_probabilities_outside_0_1_are_refused(field: str, value: float) -> None:
    with pytest.raises(InputError, match=f"link x: {field} .* is outside 0..100%"):
        engine_params(forced(**{field: value}), "link x")


def test_a_link_spec_names_the_direction() -> None:
    spec = LinkSpec(name="aktau-sumgait", a_node="aktau", b_node="sumgait", a_ifname="l0a", b_ifname="l0b",
                    max_frame=1518, a_to_b=LinkParams(), b_to_a=forced(delay_ns=2**64), seed_a_to_b=1, seed_b_to_a=2)
    with pytest.raises(InputError, match=r"^link aktau-sumgait b_to_a \(sumgait -> aktau\): delay "):
        spec.engine_params()


def test_the_engine_itself_would_overflow() -> None:
    """Why the gate is there: the C conversion raises OverflowError, which named nothing."""
    with pytest.raises(OverflowError):
        _engine.offline_run(forced(delay_ns=2**64).to_engine(), [0], [64])
