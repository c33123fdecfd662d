"""Presets: every number traceable to shared/reference/trans_caspian.yaml."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.presets import LENGTH_TAGS, PRESETS, REFERENCE, get_preset

# CI puts shared/ beside the clone: <clone>/../shared/reference/trans_caspian.yaml.
REFERENCE_FILE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "trans_caspian.yaml"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    if not REFERENCE_FILE.exists():
        pytest.skip(f"reference file {REFERENCE_FILE} is absent (CI places shared/ beside the clone)")
    return yaml.safe_load(REFERENCE_FILE.read_text(encoding="utf-8"))


def lookup(tree: dict[str, Any], key: str) -> Any:
    value: Any = tree
    for part in key.split("."):
        assert isinstance(value, dict) and part in value, f"{key}: no {part!r} in the reference"
        value = value[part]
    return value


def test_every_reference_figure_matches_the_file(reference: dict[str, Any]) -> None:
    for key, value in REFERENCE.items():
        assert lookup(reference, key) == value, key


def test_every_length_tag_matches_the_file(reference: dict[str, Any]) -> None:
    for key, tag in LENGTH_TAGS.items():
        if key.startswith("corridor_segments."):
            assert lookup(reference, key.rsplit(".", 1)[0] + ".tag") == tag, key


def test_every_corridor_segment_has_a_preset(reference: dict[str, Any]) -> None:
    names = {preset_name.lower() for preset_name in reference["corridor_segments"]}
    assert names <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_numbers_derive_from_cited_keys(name: str, reference: dict[str, Any]) -> None:
    preset = PRESETS[name]
    cited = {key: lookup(reference, key) for key in preset.sources}
    length_key = next(key for key in preset.sources if key.rsplit(".", 1)[-1].startswith("length_km"))
    assert preset.length_km == cited[length_key]
    terminal_ns = cited["physics.transponder_pair_ms"] * 1e6
    if "physics.fiber_group_index" in cited:
        propagation_ns = preset.length_km * cited["physics.fiber_group_index"] / 299_792.458 * 1e9
    else:
        propagation_ns = preset.length_km * cited["physics.propagation_us_per_km"] * 1e3
    assert preset.delay_ns == pytest.approx(propagation_ns + terminal_ns, abs=1)
    assert preset.terminal_ns == terminal_ns
    assert preset.loss == cited["physics.healthy_loss"]
    assert preset.tag == LENGTH_TAGS[length_key]


def test_aktau_sumgait_matches_published_one_way_delay(reference: dict[str, Any]) -> None:
    preset = get_preset("aktau-sumgait")
    assert preset.propagation_ns == pytest.approx(1_812_000, abs=500)
    assert preset.delay_ns / 1e6 == pytest.approx(reference["trans_caspian_cable"]["one_way_delay_ms"], abs=0.005)


def test_aktau_sumgait_is_unlimited_and_jitter_free() -> None:
    params = get_preset("aktau-sumgait").params()
    assert isinstance(params, LinkParams)
    assert params.rate_bps == 0 and params.jitter_ns == 0 and not params.trace_ms
    assert params.loss.kind == "random" and params.loss.probabilities == (1e-5,)
    assert params.delay_ns == 1_911_787


def test_reserve_route_is_330_km() -> None:
    assert get_preset("kuryk-buzovna").length_km == 330


def test_unknown_preset_suggests() -> None:
    with pytest.raises(InputError) as info:
        get_preset("aktau-sumgiat")
    assert "unknown preset 'aktau-sumgiat'" in str(info.value)
    assert "did you mean 'aktau-sumgait'?" in info.value.fix
    assert "kuryk-buzovna" in info.value.fix


def test_unknown_preset_without_close_match_lists_names() -> None:
    with pytest.raises(InputError) as info:
        get_preset("zzz")
    assert "did you mean" not in info.value.fix and "aktau-sumgait" in info.value.fix
