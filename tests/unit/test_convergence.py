"""RFC 6412/6413 convergence benchmarks (emulator.routing.convergence) and the BFD detection window
(emulator.routing.failover) on synthetic probe series with hand-computed answers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from emulator.routing.convergence import (
    SUSTAINED_NS,
    ProbeStream,
    convergence_metrics,
    loss_derived_ns,
    loss_of_connectivity_ns,
    offered_in,
    packet_sampling_interval_ns,
    probe_windows,
    rate_derived_ns,
    reordered_and_duplicates,
    sampling_intervals,
)
from emulator.routing.events import StateEvent
from emulator.routing.failover import bfd_detection_window_ns, bfd_windows_ns, failover_metrics, step_windows
from emulator.traffic.probe import ProbeRecords

S = 1_000_000_000
MS = 1_000_000
OWD = 40 * MS


def stream(lost: set[int] | range, *, count: int = 10_000, interval: int = MS, owd: int = OWD) -> ProbeStream:
    """`count` probes every `interval` from t = 0, each arriving `owd` later, except the `lost` ones."""
    lost = set(lost)
    got = [q for q in range(count) if q not in lost]
    return ProbeStream(ProbeRecords(got, [q * interval for q in got], [q * interval + owd for q in got]),
                       count, interval, 0)


# one cut at 5 s, restored at 9 s (run end 10 s): the cut's probes are those sent in [4.9 s, 9 s)
STEPS = step_windows([("cut1", "cut", "ab", 5 * S), ("restore1", "restore", "ab", 9 * S)], 10 * S)


def metrics(s: ProbeStream, *more: ProbeStream, step: str = "cut1") -> dict[str, float]:
    out = convergence_metrics(STEPS, [s, *more])
    prefix = f"routing.{step}."
    return {key[len(prefix):]: value for key, value in out.items() if key.startswith(prefix)}


def test_probe_windows_partition_the_stream() -> None:
    assert probe_windows(STEPS) == {"cut1": (4_900 * MS, 9 * S), "restore1": (9 * S, 10 * S)}
    # a cut right after another: the first ends where the second's lead-in begins
    two = step_windows([("cut1", "cut", "ab", 5 * S), ("cut2", "cut", "cd", 6 * S)], 10 * S)
    assert probe_windows(two) == {"cut1": (4_900 * MS, 5_900 * MS), "cut2": (5_900 * MS, 10 * S)}


def test_psi_holds_ten_probes_and_at_least_10_ms() -> None:
    assert packet_sampling_interval_ns(MS) == 10 * MS            # 1 kHz
    assert packet_sampling_interval_ns(2 * MS) == 20 * MS        # the corridor's 500 pps
    assert packet_sampling_interval_ns(100_000) == 10 * MS       # 10 kHz: 100 probes per PSI


def test_clean_300_ms_gap_at_1_khz() -> None:
    m = metrics(stream(range(5000, 5300)))   # probes sent 5.000 .. 5.299 s lost
    assert m["loss_derived_ms"] == 300.0
    assert m["loss_of_connectivity_ms"] == 300.0
    # PSIs from 4.9 s: the first impaired one is [5.00, 5.01), the first whole one after [5.30, 5.31)
    assert m["rate_derived_first_ms"] == 300.0 and m["rate_derived_full_ms"] == 300.0
    assert m["psi_ms"] == 10.0 and m["sustained_s"] == SUSTAINED_NS / S == 2.0
    assert m["reordered_packets"] == 0.0 and m["duplicate_packets"] == 0.0
    assert m["route_specific_min_ms"] == m["route_specific_max_ms"] == m["route_specific_mean_ms"] == 300.0
    # the restore lost nothing: no PSI below the offered rate
    r = metrics(stream(range(5000, 5300)), step="restore1")
    assert r["loss_derived_ms"] == 0.0 and r["rate_derived_first_ms"] == 0.0 and r["rate_derived_full_ms"] == 0.0


def test_gap_off_the_psi_grid_costs_one_psi_of_resolution() -> None:
    m = metrics(stream(range(5005, 5305)))   # 300 ms lost from 5.005 s: PSIs [5.00, 5.01) .. [5.30, 5.31) hit
    assert m["loss_derived_ms"] == 300.0
    assert m["rate_derived_first_ms"] == 310.0 and m["rate_derived_full_ms"] == 310.0


def test_gap_with_packets_trickling_through() -> None:
    # 5.000 .. 5.299 s lost but for 5.100 and 5.200: the longest silence is 100 ms, the loss 298 ms
    m = metrics(stream(set(range(5000, 5300)) - {5100, 5200}))
    assert m["loss_derived_ms"] == 298.0
    assert m["loss_of_connectivity_ms"] == 100.0
    # a PSI with 1 of 10 forwarded is still below the offered rate
    assert m["rate_derived_first_ms"] == 300.0 and m["rate_derived_full_ms"] == 300.0


def test_swing_back_that_dips_again_within_the_validation_time() -> None:
    # lost 5.0-5.3 s, forwarded 5.3-5.8 s, lost again 5.8-5.9 s, then stable
    m = metrics(stream({*range(5000, 5300), *range(5800, 5900)}))
    assert m["loss_derived_ms"] == 400.0 and m["loss_of_connectivity_ms"] == 300.0
    assert m["rate_derived_first_ms"] == 300.0    # the rate was back at 5.3 s ...
    assert m["rate_derived_full_ms"] == 900.0     # ... but stayed back only from 5.9 s
    # a dip later than the validation time after the recovery does not move full convergence
    late = metrics(stream({*range(5000, 5300), *range(7400, 7410)}))
    assert late["rate_derived_first_ms"] == 300.0 and late["rate_derived_full_ms"] == 300.0
    assert late["loss_derived_ms"] == 310.0


def test_no_recovery_within_the_window() -> None:
    never = metrics(stream(range(5000, 10_000)))              # lost to the end
    assert never["rate_derived_first_ms"] is None and never["rate_derived_full_ms"] is None
    assert never["loss_derived_ms"] == 4000.0 == never["loss_of_connectivity_ms"]   # [5 s, 9 s) of the cut's window
    short = metrics(stream(range(5000, 7500)))                # back at 7.5 s: 1.5 s before the restore < 2 s
    assert short["rate_derived_first_ms"] == 2500.0 and short["rate_derived_full_ms"] is None


def test_rate_derived_on_samples() -> None:
    psi = 10 * MS
    assert rate_derived_ns([(10, 10)] * 5, psi) == (0, 0)
    assert rate_derived_ns([(10, 10), (10, 3), (10, 0), (10, 10), (10, 10)], psi, 2 * psi) == (20 * MS, 20 * MS)
    # an empty PSI (a sender stall) is not below the offered rate
    assert rate_derived_ns([(10, 0), (0, 0), (10, 10)], psi, 2 * psi) == (10 * MS, 10 * MS)
    assert rate_derived_ns([(10, 0), (10, 10), (10, 9), (10, 10)], psi, 2 * psi) == (10 * MS, None)


def test_sampling_intervals_count_by_send_time() -> None:
    s = stream({12, 13, 25}, count=40)
    offered = offered_in(s, 5 * MS, 35 * MS)
    assert [q for q, _, _ in offered.probes] == list(range(5, 35))
    assert sampling_intervals(offered, 5 * MS, 10 * MS) == [(10, 8), (10, 10), (10, 9)]
    assert loss_derived_ns(offered) == 3 * MS and loss_of_connectivity_ns(offered) == 2 * MS


def test_reordering_and_duplicates() -> None:
    # arrival order: 0 1 3 2 4 4 6 5 7 8 8 8 (2 and 5 overtaken; 4 twice, 8 three times)
    seqs = [0, 1, 3, 2, 4, 4, 6, 5, 7, 8, 8, 8]
    records = ProbeRecords(seqs, [q * MS for q in seqs], [q * MS + OWD + i for i, q in enumerate(seqs)])
    assert reordered_and_duplicates(records, 0, 10 * MS) == (2, 3)
    assert reordered_and_duplicates(records, 5 * MS, 10 * MS) == (1, 2)   # sent from 5 ms on: 5 after 6; 8 x 3
    m = convergence_metrics(step_windows([("set1", "set", "ab", 100 * MS)], 200 * MS),
                            [ProbeStream(records, 9, MS, 0)])
    assert m["routing.set1.reordered_packets"] == 2.0 and m["routing.set1.duplicate_packets"] == 3.0
    assert m["routing.set1.loss_derived_ms"] == 0.0


def test_route_specific_over_several_streams() -> None:
    m = metrics(stream(range(5000, 5300)), stream(range(5000, 5100)),
                stream(range(2450, 2600), count=5000, interval=2 * MS))   # 500 pps: 150 lost = 300 ms
    assert m["loss_derived_ms"] == 300.0          # the first stream's
    assert m["route_specific_min_ms"] == 100.0 and m["route_specific_max_ms"] == 300.0
    assert m["route_specific_mean_ms"] == pytest.approx(700 / 3)


def test_without_a_probe_stream_everything_is_none() -> None:
    m = convergence_metrics(STEPS, [])
    assert m["routing.cut1.loss_derived_ms"] is None and m["routing.restore1.rate_derived_full_ms"] is None


@pytest.mark.parametrize("interval_ms, multiplier, low_ms, high_ms", [
    (100, 3, 200, 300),     # the scenarios' timers: the last packet left 0-100 ms before the cut
    (50, 3, 100, 150),
    (300, 3, 600, 900),
    (10, 5, 40, 50),
    (100, 1, 10, 100),      # Detect Mult 1: intervals are 75-90 % (RFC 5880 §6.8.7)
    (1000, 2, 1000, 2000),
])
def test_bfd_detection_window(interval_ms: int, multiplier: int, low_ms: int, high_ms: int) -> None:
    assert bfd_detection_window_ns(interval_ms * MS, multiplier) == (low_ms * MS, high_ms * MS)
    # the last packet through still crosses the link: its one-way delay moves both ends
    assert bfd_detection_window_ns(interval_ms * MS, multiplier, 1_912_000) == (
        low_ms * MS + 1_912_000, high_ms * MS + 1_912_000)


def _topology(bfd: tuple[int, int] | None) -> SimpleNamespace:
    ab = SimpleNamespace(delay_ns=2 * MS, jitter_ns=0)
    ba = SimpleNamespace(delay_ns=5 * MS, jitter_ns=1 * MS)
    link = SimpleNamespace(name="ab", a_to_b=ab, b_to_a=ba)

    def find(name: str) -> SimpleNamespace:
        if name != "ab":
            raise KeyError(name)
        return link
    routing = SimpleNamespace(bfd=SimpleNamespace(interval_ns=bfd[0] * MS, multiplier=bfd[1]) if bfd else None)
    return SimpleNamespace(routing=routing, link=find)


def test_bfd_windows_per_step_and_the_flag() -> None:
    steps = step_windows([("cut1", "cut", "ab", 5 * S), ("restore1", "restore", "ab", 9 * S),
                          ("cut2", "cut", "ab", 12 * S), ("cut3", "cut", "ab", 20 * S)], 30 * S)
    windows = bfd_windows_ns(steps, _topology((100, 3)), {"cut2": "b_to_a"})
    # both directions cut: the shorter one-way delay (2 ms) decides; b_to_a alone: 5 ms - 1 ms .. 5 ms + 1 ms
    assert windows == {"cut1": (202 * MS, 302 * MS), "cut2": (204 * MS, 306 * MS), "cut3": (202 * MS, 302 * MS)}
    assert bfd_windows_ns(steps, _topology(None), {}) == {}
    events = [StateEvent(5 * S + 250 * MS, "ra", "bfd", "198.18.0.2", "down"),
              StateEvent(9 * S + 900 * MS, "ra", "bfd", "198.18.0.2", "up"),
              StateEvent(12 * S + 350 * MS, "rb", "bfd", "198.18.0.1", "down")]
    m = failover_metrics(steps, [], state_events=events, bfd_windows_ns=windows)
    assert m["routing.cut1.bfd_expected_ms"] == 302.0 and m["routing.cut1.bfd_expected_min_ms"] == 202.0
    assert m["routing.cut1.detection_ms"] == 250.0 and m["routing.cut1.detection_in_bfd_window"] is True
    assert m["routing.cut2.detection_in_bfd_window"] is False      # 350 ms > 306 ms: late
    assert m["routing.cut3.detection_in_bfd_window"] is False      # nothing detected at all
    assert m["routing.restore1.bfd_expected_ms"] is None and m["routing.restore1.detection_in_bfd_window"] is None
    # BIRD's millisecond stamps may read 1 ms early
    early = [StateEvent(5 * S + 201 * MS, "ra", "bfd", "198.18.0.2", "down")]
    assert failover_metrics(steps[:1], [], state_events=early,
                            bfd_windows_ns=windows)["routing.cut1.detection_in_bfd_window"] is True
