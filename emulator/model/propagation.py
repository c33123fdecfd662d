"""Geography to delay: how long light takes through a length of optical fibre.

Light in fibre travels at c / n_g, where n_g is the fibre's group index (the
index that governs a pulse's speed, slightly above the phase index). Numbers
come from the project's reference file `shared/reference/trans_caspian.yaml`.
"""

from __future__ import annotations

from emulator.errors import InputError

#: Speed of light in vacuum, km/s (exact by the SI definition of the metre).
SPEED_OF_LIGHT_KM_S = 299_792.458

#: Group index of standard single-mode fibre (G.652/G.657) at 1550 nm.
#: Reference key `physics.fiber_group_index` (P: published range 1.462..1.469).
FIBER_GROUP_INDEX = 1.468

#: The same physics rounded to a per-km figure, as published in the reference:
#: key `physics.propagation_us_per_km` (C: 1.468 / 299792.458 km/s). Corridor
#: presets use it because the reference derives their delays with it.
PROPAGATION_US_PER_KM = 4.897


def propagation_delay_ns(length_km: float, group_index: float = FIBER_GROUP_INDEX) -> int:
    """One-way propagation delay in ns over `length_km` of fibre with `group_index`.

    370 km at the default group index is 1 811 787 ns (1.812 ms).
    """
    if length_km < 0:
        raise InputError(f"fibre length {length_km:g} km is negative", fix="give a length >= 0 km")
    if group_index < 1.0:
        # Below 1 the signal would outrun light in vacuum: surely a typo.
        raise InputError(f"group index {group_index:g} is below 1", fix="optical fibre is about 1.468")
    return round(length_km * group_index / SPEED_OF_LIGHT_KM_S * 1e9)


def delay_from_us_per_km_ns(length_km: float, us_per_km: float = PROPAGATION_US_PER_KM) -> int:
    """One-way delay in ns over `length_km` at `us_per_km` microseconds per km."""
    if length_km < 0:
        raise InputError(f"fibre length {length_km:g} km is negative", fix="give a length >= 0 km")
    return round(length_km * us_per_km * 1000)
