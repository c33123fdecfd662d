"""Propagation delay over fibre."""

import pytest

from emulator.errors import InputError
from emulator.model.propagation import (
    FIBER_GROUP_INDEX,
    PROPAGATION_US_PER_KM,
    SPEED_OF_LIGHT_KM_S,
    delay_from_us_per_km_ns,
    propagation_delay_ns,
)


def test_caspian_cable_is_1_812_ms() -> None:
    assert propagation_delay_ns(370) == pytest.approx(1_812_000, abs=500)


def test_zero_length_is_zero() -> None:
    assert propagation_delay_ns(0) == 0


def test_per_km_figure_matches_group_index() -> None:
    # The reference's 4.897 us/km is 1.468 / c, rounded to 4 digits.
    assert FIBER_GROUP_INDEX / SPEED_OF_LIGHT_KM_S * 1e6 == pytest.approx(PROPAGATION_US_PER_KM, abs=5e-4)


def test_vacuum_is_faster() -> None:
    assert propagation_delay_ns(299_792.458, group_index=1.0) == 10**9


def test_us_per_km() -> None:
    assert delay_from_us_per_km_ns(35) == 171_395
    assert delay_from_us_per_km_ns(1, 5.0) == 5_000


@pytest.mark.parametrize("call", [lambda: propagation_delay_ns(-1), lambda: propagation_delay_ns(1, 0.5),
                                  lambda: delay_from_us_per_km_ns(-3)])  # fmt: skip
def test_rejects_nonsense(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError):
        call()
