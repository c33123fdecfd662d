"""Named link presets for the Europe–Asia corridor, each number traceable.

Every number a preset uses comes from `shared/reference/trans_caspian.yaml`
and is looked up here through `REFERENCE`, keyed by that file's dotted key;
`Preset.sources` lists the keys a preset depends on and the unit tests check
each value against the file. That file tags each figure P (published),
C (calculated from published inputs) or E (estimate); `Preset.tags` carries the
tag of the length a preset rests on, so reports can say how firm it is.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams, LossModel
from emulator.model.propagation import delay_from_us_per_km_ns, propagation_delay_ns

#: The reference figures presets use, by their key in trans_caspian.yaml.
REFERENCE: dict[str, float] = {
    "physics.fiber_group_index": 1.468,
    "physics.propagation_us_per_km": 4.897,
    "physics.transponder_pair_ms": 0.1,
    "physics.healthy_loss": 1.0e-5,
    "trans_caspian_cable.length_km": 370,
    "trans_caspian_cable.length_km_2025": 380,
    "trans_caspian_cable.one_way_delay_ms": 1.91,
    "trans_caspian_cable.reserve_route.length_km": 330,
    "corridor_segments.Frankfurt-Istanbul.length_km": 2430,
    "corridor_segments.Istanbul-Tbilisi.length_km": 1720,
    "corridor_segments.Tbilisi-Baku.length_km": 560,
    "corridor_segments.Baku-Sumgait.length_km": 35,
    "corridor_segments.Aktau-Almaty.length_km": 2500,
    "corridor_segments.Almaty-Khorgos.length_km": 330,
    "corridor_segments.Khorgos-Urumqi.length_km": 700,
    "corridor_segments.Frankfurt-Moscow-Almaty.length_km": 6665,
    "corridor_segments.Siyazan-Turkmenbashi.length_km": 300,
}

#: The P/C/E tag the reference gives each length (corridor_segments.*.tag;
#: the cable's lengths are marked P in comments there).
LENGTH_TAGS: dict[str, str] = {
    "trans_caspian_cable.length_km": "P",
    "trans_caspian_cable.length_km_2025": "P",
    "trans_caspian_cable.reserve_route.length_km": "P",
    "corridor_segments.Frankfurt-Istanbul.length_km": "C",
    "corridor_segments.Istanbul-Tbilisi.length_km": "C",
    "corridor_segments.Tbilisi-Baku.length_km": "C",
    "corridor_segments.Baku-Sumgait.length_km": "E",
    "corridor_segments.Aktau-Almaty.length_km": "E",
    "corridor_segments.Almaty-Khorgos.length_km": "C",
    "corridor_segments.Khorgos-Urumqi.length_km": "C",
    "corridor_segments.Frankfurt-Moscow-Almaty.length_km": "C",
    "corridor_segments.Siyazan-Turkmenbashi.length_km": "P",
}

_MS_TO_NS = 1_000_000


@dataclass(frozen=True)
class Preset:
    """A named link: fibre length, terminal equipment, loss, and where each came from.

    The one-way delay is propagation over `length_km` plus `terminal_ns`.
    Propagation uses the group index (`us_per_km` None) or a per-km figure.
    """

    name: str
    description: str
    length_km: float
    #: transponders/OEO/FEC at both ends, added once per direction
    terminal_ns: int
    #: independent (netem `random`) loss probability
    loss: float = 0.0
    jitter_ns: int = 0
    #: 0 = unlimited; a preset only limits rate where the link's capacity could bind
    rate_bps: int = 0
    #: None = length x group index / c; else this many µs per km
    us_per_km: float | None = None
    #: dotted keys of trans_caspian.yaml each number above comes from
    sources: tuple[str, ...] = ()
    #: P/C/E tag of the length (see the module docstring)
    tag: str = ""

    @property
    def propagation_ns(self) -> int:
        """Propagation delay over the fibre, ns."""
        if self.us_per_km is None:
            return propagation_delay_ns(self.length_km, REFERENCE["physics.fiber_group_index"])
        return delay_from_us_per_km_ns(self.length_km, self.us_per_km)

    @property
    def delay_ns(self) -> int:
        """One-way delay: propagation plus terminal equipment, ns."""
        return self.propagation_ns + self.terminal_ns

    def params(self) -> LinkParams:
        """The `LinkParams` of one direction of this link (both directions are alike)."""
        loss = LossModel("random", (self.loss,)) if self.loss else LossModel()
        return LinkParams(delay_ns=self.delay_ns, jitter_ns=self.jitter_ns, loss=loss, rate_bps=self.rate_bps)


def _terminal_ns() -> int:
    return round(REFERENCE["physics.transponder_pair_ms"] * _MS_TO_NS)


def _cable(name: str, description: str, length_key: str) -> Preset:
    """A Caspian cable: length from the reference, propagation from the group index."""
    return Preset(
        name=name,
        description=description,
        length_km=REFERENCE[length_key],
        terminal_ns=_terminal_ns(),
        loss=REFERENCE["physics.healthy_loss"],
        # No rate limit: the cable's 400 Tbps design capacity can never bind in an
        # emulator, and benchmarks need the link unlimited. No jitter: a healthy
        # wave's jitter (physics.jitter_ms.wave, E) is below what we can reproduce.
        sources=(
            length_key,
            "physics.fiber_group_index",
            "physics.transponder_pair_ms",
            "physics.healthy_loss",
        ),
        tag=LENGTH_TAGS[length_key],
    )


def _segment(name: str, reference_name: str) -> Preset:
    """A corridor segment: length x the reference's µs/km, plus terminals."""
    length_key = f"corridor_segments.{reference_name}.length_km"
    return Preset(
        name=name,
        description=f"{reference_name.replace('-', '–')} corridor segment, "
        f"{REFERENCE[length_key]:g} km of fibre ({LENGTH_TAGS[length_key]})",
        length_km=REFERENCE[length_key],
        terminal_ns=_terminal_ns(),
        loss=REFERENCE["physics.healthy_loss"],
        us_per_km=REFERENCE["physics.propagation_us_per_km"],
        sources=(
            length_key,
            "physics.propagation_us_per_km",
            "physics.transponder_pair_ms",
            "physics.healthy_loss",
        ),
        tag=LENGTH_TAGS[length_key],
    )


def _build() -> dict[str, Preset]:
    presets = [
        _cable(
            "aktau-sumgait",
            "Trans-Caspian subsea cable Aktau–Sumgait, 370 km, unrepeatered "
            "(one-way 1.91 ms: trans_caspian_cable.one_way_delay_ms)",
            "trans_caspian_cable.length_km",
        ),
        _cable(
            "aktau-sumgait-380",
            "Trans-Caspian subsea cable Aktau–Sumgait at the 380 km of the 2025 press and tender "
            "(trans_caspian_cable.length_km_2025; the default keeps the seed's 370 km)",
            "trans_caspian_cable.length_km_2025",
        ),
        _cable(
            "kuryk-buzovna",
            "planned reserve route of the Trans-Caspian cable, Kuryk–Buzovna, 330 km",
            "trans_caspian_cable.reserve_route.length_km",
        ),
        _segment("frankfurt-istanbul", "Frankfurt-Istanbul"),
        _segment("istanbul-tbilisi", "Istanbul-Tbilisi"),
        _segment("tbilisi-baku", "Tbilisi-Baku"),
        _segment("baku-sumgait", "Baku-Sumgait"),
        _segment("aktau-almaty", "Aktau-Almaty"),
        _segment("almaty-khorgos", "Almaty-Khorgos"),
        _segment("khorgos-urumqi", "Khorgos-Urumqi"),
        _segment("frankfurt-moscow-almaty", "Frankfurt-Moscow-Almaty"),
        _segment("siyazan-turkmenbashi", "Siyazan-Turkmenbashi"),
    ]
    return {preset.name: preset for preset in presets}


#: Every preset by name.
PRESETS: dict[str, Preset] = _build()


def get_preset(name: str) -> Preset:
    """The preset called `name`; an InputError with a suggestion if there is none."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(f"unknown preset {name!r}", fix=f"{hint}presets: {', '.join(PRESETS)}")
