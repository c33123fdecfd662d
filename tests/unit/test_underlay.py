"""A link carried between machines: the underlay's delay taken off, a slow or noisy underlay refused (no root)."""

from __future__ import annotations

import pytest

from emulator.errors import InputError
from emulator.model.linkparams import LinkParams
from emulator.model.underlay import UNDERLAY_NOISE_NS, Underlay, UnderlayTooSlow, carried, from_rtts

US = 1_000


def test_the_underlay_is_half_the_round_trips() -> None:
    # 100 echoes: 98 at 200 µs, two at 300 and 400: median 200, p99 (rank 99) 300
    rtts = [200 * US] * 98 + [300 * US, 400 * US]
    assert from_rtts(rtts) == Underlay(delay_ns=100 * US, spread_ns=50 * US, echoes=100)
    with pytest.raises(InputError, match="at least 100"):
        from_rtts([200 * US] * 99)


def test_the_cable_keeps_its_delay_across_machines() -> None:
    # the Trans-Caspian cable's 1.8 ms over an underlay of 120 µs one way: the engine gives 1.68 ms
    cable = LinkParams(delay_ns=1_800 * US, jitter_ns=0)
    out = carried("aktau-sumgait", "a_to_b", cable, Underlay(delay_ns=120 * US, spread_ns=20 * US, echoes=500))
    assert out.delay_ns == 1_680 * US and out.jitter_ns == 0
    # an underlay exactly as slow as the link leaves no delay to the engine
    assert carried("x", "a_to_b", cable, Underlay(1_800 * US, 0, 500)).delay_ns == 0


def test_an_underlay_slower_or_noisier_than_the_link_is_refused() -> None:
    cable = LinkParams(delay_ns=1_800 * US)
    with pytest.raises(UnderlayTooSlow) as slow:
        carried("aktau-sumgait", "b_to_a", cable, Underlay(2_000 * US, 0, 500))
    assert "link aktau-sumgait b_to_a" in str(slow.value) and "2ms" in str(slow.value)
    assert "\n" not in str(slow.value)
    # noise beyond the engine's own 50 µs on a link without jitter
    with pytest.raises(UnderlayTooSlow, match="varies"):
        carried("aktau-sumgait", "a_to_b", cable, Underlay(100 * US, UNDERLAY_NOISE_NS + 1, 500))
    # a link with 200 µs of jitter of its own tolerates that much more
    jittery = cable.replace(jitter_ns=200 * US)
    assert carried("aktau-sumgait", "a_to_b", jittery, Underlay(100 * US, 240 * US, 500)).delay_ns == 1_700 * US
