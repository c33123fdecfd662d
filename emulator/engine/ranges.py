"""The last gate before the engine's C conversion: every value must fit the engine.

Values normally arrive checked (LinkParams and the loader hold the same table,
emulator.model.limits); `engine_params` is there so that a value that slipped
past is an InputError naming the link and the value, not an EngineRangeError
(an OverflowError) from inside the compiled engine.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams

#: The range of the engine's int64_t fields (cext/params.pxi): a value outside
#: it fails deep in the C conversion (EngineRangeError, which names the key but
#: not the link), so it is refused here first.
_INT64 = (-(2**63), 2**63 - 1)
#: ms in a trace entry: the engine multiplies each by 1e6 into int64 ns
_TRACE_MS_MAX = (2**63 - 1) // 1_000_000


def _engine_ranges() -> dict[str, tuple[int, int]]:
    """The range of each integer the engine takes: the bounds of emulator.model.limits
    where that table exists (what `caspian validate` accepts), else the C types'."""
    try:
        from emulator.model import limits
    except ImportError:  # only the C types bound the values then
        limits = None  # type: ignore[assignment]

    def upper(name: str) -> int:
        return min(int(getattr(limits, name, _INT64[1])), _INT64[1])

    return {
        "delay_ns": (0, upper("MAX_DELAY_NS")),
        "jitter_ns": (0, upper("MAX_JITTER_NS")),
        "rate_bps": (0, upper("MAX_RATE_BPS")),
        "overhead_bytes": (0, upper("MAX_OVERHEAD_BYTES")),
        "limit_packets": (0, upper("MAX_LIMIT_PACKETS")),
        "limit_bytes": (0, upper("MAX_LIMIT_BYTES")),
        "trace_ms": (0, min(upper("MAX_TRACE_PERIOD_MS"), _TRACE_MS_MAX)),
    }


ENGINE_RANGES = _engine_ranges()
#: the probabilities the engine draws against (doubles in 0..1)
_PROBABILITIES = ("jitter_correlation", "duplicate", "corrupt", "reorder")


def _shown(key: str, value: Any, *, raw: bool = False) -> str:
    """A value in the unit the user writes (`3601s`); `raw` adds the number the engine gets."""
    from emulator.model.units import format_rate, format_time

    try:
        if key in ("delay_ns", "jitter_ns"):
            return format_time(value) + (f" ({value} ns)" if raw else "")
        if key == "rate_bps":
            return format_rate(value) + (f" ({value} bit/s)" if raw else "")
        if key == "trace_ms":
            return f"{value} ms"
    except (TypeError, ValueError, OverflowError):
        pass
    return repr(value)


def engine_params(params: LinkParams, where: str) -> dict[str, Any]:
    """`params.to_engine()` after checking that every value fits the engine.

    `where` names the link direction (`link aktau-sumgait a_to_b`). Values
    normally arrive checked (LinkParams and the loader hold the same table);
    this is the last gate before the C conversion, so that a value that
    slipped past is an InputError naming the link and the value, not an
    OverflowError from inside the engine.
    """
    engine = params.to_engine()
    for key, (lo, hi) in ENGINE_RANGES.items():
        values = engine[key] if key == "trace_ms" else [engine[key]]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                name = key.rsplit("_", 1)[0]
                raise InputError(
                    f"{where}: {name} {_shown(key, value, raw=True)} is outside the engine's range "
                    f"{_shown(key, lo)}..{_shown(key, hi)}",
                    fix=f"give a {name} within that range",
                )
    probabilities = [(key, engine[key]) for key in _PROBABILITIES] + [("loss", p) for p in engine["loss_p"]]
    for key, value in probabilities:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise InputError(f"{where}: {key} {value!r} is outside 0..100%",
                             fix="give a percentage between 0% and 100%")
    return engine
