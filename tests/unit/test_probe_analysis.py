"""Probe metrics on recorded sequences with hand-computed expectations; the records file and packets."""

from __future__ import annotations

import os
from fractions import Fraction

import pytest

from emulator.scenario.scenario import TRAFFIC_METRICS
from emulator.traffic import analysis
from emulator.traffic.analysis import analyze_probes, estimate_send_times, probe_series
from emulator.traffic.probe import (
    ProbeRecords,
    build_template,
    dump_records,
    load_records,
    load_summary,
    receiver_argv,
    sender_argv,
    udp_checksum,
)

MS = 1_000_000


def records(rows: list[tuple[int, float, float]]) -> ProbeRecords:
    """(seq, send ms, recv ms) rows in arrival order."""
    return ProbeRecords([r[0] for r in rows], [round(r[1] * MS) for r in rows], [round(r[2] * MS) for r in rows])


# 8 probes at 1 ms; 5 and 6 lost; 2 overtaken by 3; 3 arrives twice.
EXAMPLE = records([
    (0, 0, 2.0),
    (1, 1, 3.1),
    (3, 3, 5.0),
    (2, 2, 5.4),
    (3, 3, 5.5),
    (4, 4, 6.2),
    (7, 7, 9.0),
])


def test_example_every_metric() -> None:
    m = analyze_probes(EXAMPLE, 8, MS)
    assert list(m) == list(TRAFFIC_METRICS["probe"])
    assert m["sent"] == 8
    assert m["received"] == 6
    assert m["loss_pct"] == 25.0
    assert m["loss_outside_events_pct"] == 25.0  # no events: the same
    assert m["duplicates"] == 1
    assert m["reordered"] == 1  # 2 after 3
    # first-copy OWDs 2.0 2.1 2.0 3.4 2.2 2.0 ms
    assert m["owd_min_ms"] == pytest.approx(2.0)
    assert m["owd_max_ms"] == pytest.approx(3.4)
    assert m["owd_mean_ms"] == pytest.approx(13.7 / 6)
    assert m["owd_median_ms"] == pytest.approx(2.05)   # (2.0 + 2.1) / 2
    assert m["owd_p99_ms"] == pytest.approx(3.4)       # rank ceil(0.99 * 6) = 6
    # RFC 3550 over arrival order: |D| = 0.1 0.1 1.4 1.2 0.2 ms
    transit = [Fraction(x, 10) for x in (20, 21, 20, 34, 22, 20)]
    j = Fraction(0)
    for a, b in zip(transit, transit[1:]):
        j += (abs(b - a) - j) / 16
    assert j == Fraction(1779377, 10485760)
    assert m["jitter_ms"] == pytest.approx(float(j), abs=1e-12)  # 0.16969...
    assert m["jitter_mean_ms"] == pytest.approx(3.0 / 5)         # (0.1 + 0.1 + 1.4 + 1.2 + 0.2) / 5
    # 4 (sent 4 ms) then 7 (sent 7 ms): 3 ms apart, minus one interval
    assert m["longest_gap_ms"] == pytest.approx(2.0)
    if "loss_burst_mean" in m:
        assert m["loss_burst_mean"] == 2.0  # one run: 5, 6


def test_loss_outside_event_windows() -> None:
    # lost 5 and 6 are interpolated to 5 ms and 6 ms
    assert estimate_send_times(EXAMPLE, 8, MS) == [k * MS for k in range(8)]
    inside_both = analyze_probes(EXAMPLE, 8, MS, event_windows=[(int(4.5 * MS), 7 * MS)])
    assert inside_both["loss_outside_events_pct"] == 0.0
    only_5 = analyze_probes(EXAMPLE, 8, MS, event_windows=[(int(4.5 * MS), int(5.5 * MS))])
    assert only_5["loss_outside_events_pct"] == pytest.approx(100 / 7)  # 6 lost of 0,1,2,3,4,6,7
    assert only_5["loss_pct"] == 25.0


def test_no_loss_no_gap_despite_send_jitter() -> None:
    rows = [(k, k + (0.3 if k % 2 else 0.0), k + 2.0) for k in range(10)]
    m = analyze_probes(records(rows), 10, MS)
    assert m["loss_pct"] == 0.0
    assert m["longest_gap_ms"] == 0.0
    assert m["reordered"] == 0 and m["duplicates"] == 0


def test_leading_and_trailing_loss_count_in_intervals() -> None:
    m = analyze_probes(records([(1, 1, 3), (2, 2, 4)]), 5, MS)  # 0, 3, 4 lost
    assert m["loss_pct"] == 60.0
    assert m["longest_gap_ms"] == pytest.approx(2.0)  # 3 and 4: two intervals
    if "loss_burst_mean" in m:
        assert m["loss_burst_mean"] == 1.5  # runs [0] and [3, 4]
    assert estimate_send_times(records([(1, 1, 3), (2, 2, 4)]), 5, MS) == [0, MS, 2 * MS, 3 * MS, 4 * MS]
    # the summary's first_ns places a lost seq 0
    assert estimate_send_times(records([(2, 2, 4)]), 3, MS, first_ns=0) == [0, MS, 2 * MS]


def test_reorder_counts_each_late_packet() -> None:
    m = analyze_probes(records([(0, 0, 5), (3, 3, 5.1), (1, 1, 5.2), (2, 2, 5.3), (4, 4, 6)]), 5, MS)
    assert m["reordered"] == 2  # 1 and 2 arrive after 3
    assert m["longest_gap_ms"] == 0.0


def test_nothing_received_or_sent() -> None:
    m = analyze_probes(ProbeRecords(), 10, MS)
    assert m["loss_pct"] == 100.0 and m["loss_outside_events_pct"] == 100.0
    assert m["received"] == 0 and m["duplicates"] == 0
    assert m["owd_median_ms"] is None and m["jitter_ms"] is None and m["longest_gap_ms"] is None
    assert m["jitter_mean_ms"] is None
    empty = analyze_probes(ProbeRecords(), 0, MS)
    assert empty["loss_pct"] is None and empty["sent"] == 0


def test_series_owd_and_loss_per_window() -> None:
    start = 1_000 * MS
    # 10 probes at 20 ms from start: 3 and 4 lost (window 1 of 100 ms windows: 60, 80 ms... )
    sent_ns = [start + k * 20 * MS for k in range(10)]
    got = [k for k in range(10) if k not in (3, 4)]
    recs = ProbeRecords(got, [sent_ns[k] for k in got], [sent_ns[k] + 2 * MS for k in got])
    series = probe_series(recs, start, sent_times=sent_ns)
    assert series["owd_ms"][0] == (0.0, 2.0)
    assert len(series["owd_ms"]) == 8
    # window 0: 0..80 ms -> probes 0-4 (3, 4 lost) = 40 %; window 1: 100..180 ms -> 5-9 = 0 %
    assert series["loss_pct"] == [(0.0, 40.0), (0.1, 0.0)]
    assert probe_series(recs, start)["loss_pct"] == []


def test_series_decimation_keeps_spikes() -> None:
    n = 12_000
    owd = [2 * MS] * n
    owd[7_777] = 50 * MS
    recs = ProbeRecords(list(range(n)), [k * MS for k in range(n)], [k * MS + owd[k] for k in range(n)])
    points = probe_series(recs, 0)["owd_ms"]
    assert len(points) <= 5000
    assert max(p[1] for p in points) == 50.0
    assert [p[0] for p in points] == sorted(p[0] for p in points)


def test_records_file_round_trip(tmp_path: os.PathLike[str]) -> None:
    recs = ProbeRecords([0, 2, 1], [10, 30, 20], [2**62, -1, 0])
    path = os.path.join(str(tmp_path), "r.bin")
    with open(path, "wb") as fh:
        fh.write(dump_records(recs))
    assert load_records(path) == recs
    with open(path, "wb") as fh:
        fh.write(dump_records(recs)[:-8])
    with pytest.raises(ValueError, match="truncated"):
        load_records(path)
    summary = os.path.join(str(tmp_path), "s.json")
    with open(summary, "w") as fh:
        fh.write('{"sent": 3, "first_ns": 1, "last_ns": 3, "interval_ns": 1, "skipped": 0}')
    assert load_summary(summary)["sent"] == 3


def test_argv_helpers() -> None:
    argv = sender_argv("right", 7000, 1000, 64, 5, 6, "/tmp/s.json", True)
    assert argv[1:] == ["-m", "emulator.traffic.probe", "send", "right", "7000", "1000", "64", "5", "6",
                        "/tmp/s.json", "--ipv6"]
    assert receiver_argv(7000, "/tmp/r.bin")[1:] == ["-m", "emulator.traffic.probe", "recv", "7000", "/tmp/r.bin"]


def test_ipv4_template_is_a_valid_packet_with_no_udp_checksum() -> None:
    from scapy.layers.inet import IP, UDP

    raw, offset = build_template("198.18.0.9", "198.18.0.10", 7000, 7000, 64, ipv6=False)
    assert offset == 28 and len(raw) == 28 + 64
    packet = IP(bytes(raw))
    assert packet[IP].len == 92 and packet[UDP].len == 72 and packet[UDP].chksum == 0
    assert packet[IP].dst == "198.18.0.10"


def test_udp_checksum_matches_scapy() -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    payload = bytes(range(33))  # odd length
    for ip, src, dst, six in ((IP, "198.18.0.9", "198.18.0.10", False),
                              (IPv6, "2001:2:0:1::1", "2001:2:0:1::2", True)):
        expected = ip(bytes(ip(src=src, dst=dst) / UDP(sport=1, dport=2) / Raw(payload)))[UDP].chksum
        udp = bytes(UDP(sport=1, dport=2, chksum=0) / Raw(payload))
        assert udp_checksum(src, dst, udp, six) == expected
    raw, offset = build_template("::1", "::1", 7, 7, 16, ipv6=True)
    assert offset == 8 and len(raw) == 24  # UDP header + payload: the kernel adds IPv6 and the checksum


# -- disturbance windows -------------------------------------------------------

S = 1_000_000_000
WINDOW = dict(lead_in_ns=100_000_000, recovery_ns=S, settle_ns=200_000_000)


def test_window_is_the_span_padded_without_route_changes() -> None:
    assert analysis.disturbance_windows([(8 * S, 10 * S)], [], **WINDOW) == [(8 * S - WINDOW["lead_in_ns"], 11 * S)]


def test_a_late_route_change_extends_its_window_but_not_past_the_next_cut() -> None:
    # flap: down 8-10 s and 12-14 s; routes swing back at 12.5 s (inside the
    # second span) and at 15.4 s (after the second restore, before nothing)
    spans = [(8 * S, 10 * S), (12 * S, 14 * S)]
    changes = [int(9.4 * S), int(12.5 * S), int(15.4 * S)]
    first, second = analysis.disturbance_windows(spans, changes, **WINDOW)
    assert first == (8 * S - WINDOW["lead_in_ns"], 11 * S)          # 9.4 s is earlier than 10 s + 1 s
    assert second == (12 * S - WINDOW["lead_in_ns"], int(15.4 * S) + WINDOW["settle_ns"])


def test_route_changes_before_a_span_do_not_count_for_it() -> None:
    windows = analysis.disturbance_windows([(8 * S, 10 * S)], [int(3 * S), int(30 * S)], **WINDOW)
    assert windows == [(8 * S - WINDOW["lead_in_ns"], 30 * S + WINDOW["settle_ns"])]
    windows = analysis.disturbance_windows([(8 * S, 10 * S)], [int(3 * S)], **WINDOW)
    assert windows == [(8 * S - WINDOW["lead_in_ns"], 11 * S)]


def test_network_owd_from_engine_stamps() -> None:
    from emulator.traffic.analysis import network_owd

    first = {"seq": [0, 1, 2, 3, 1], "t_ns": [1_000, 2_000, 3_000, 4_000, 9_999]}   # 1 seen twice: first copy
    last = {"seq": [0, 1, 3, 3], "t_ns": [2_001_000, 2_002_000, 2_104_000, 2_200_000]}  # 2 never released
    got = network_owd(first, last)
    # delays of 0, 1, 3: 2.000, 2.000, 2.100 ms; |D| in release order: 0 (0->1), 0.1 ms (1->3)
    assert got == {"net_owd_min_ms": 2.0, "net_owd_median_ms": 2.0, "net_owd_p99_ms": 2.1, "net_owd_max_ms": 2.1,
                   "net_jitter_mean_ms": 0.05}
    assert network_owd({"seq": [], "t_ns": []}, last) == dict.fromkeys(got)


def test_mean_jitter_is_the_mean_absolute_delay_variation_over_every_pair() -> None:
    from emulator.traffic.analysis import mean_abs_ipdv_ms

    # sent every 1 ms; delays 2.0, 2.3, 2.1, 2.1 ms: |D| = 0.3, 0.2, 0 -> mean 0.1667 ms
    pairs = [(k * 1_000_000, k * 1_000_000 + d) for k, d in enumerate((2_000_000, 2_300_000, 2_100_000, 2_100_000))]
    assert abs(mean_abs_ipdv_ms(pairs) - 0.5 / 3) < 1e-12
    assert mean_abs_ipdv_ms(pairs[:1]) is None
    # a constant delay, however large, has no variation
    assert mean_abs_ipdv_ms([(k, k + 5_000_000) for k in range(10)]) == 0.0


def test_spacing_error_is_the_mean_pacing_error_of_the_received_pairs() -> None:
    # EXAMPLE's send stamps are exact: every pair spaced by its sequence gap
    assert analysis.spacing_error_mean_ns(EXAMPLE, 8, MS) == 0
    # 1 left 0.3 ms late, 4 0.5 ms early; 5 and 6 lost. Pairs in arrival order:
    # (0,1) +0.3, (1,2) -0.3, (2,3) 0, (3,4) -0.5, (4,7) +0.5: 1.6 ms over 5
    late = records([(0, 0, 2.0), (1, 1.3, 3.3), (2, 2, 4.0), (3, 3, 5.0), (4, 3.5, 5.5), (7, 7, 9.0)])
    assert analysis.spacing_error_mean_ns(late, 8, MS) == pytest.approx(1.6 * MS / 5)
    assert analysis.spacing_error_mean_ns(records([(0, 0, 2.0)]), 1, MS) is None


def test_only_the_senders_lateness_inside_a_gap_can_lengthen_it() -> None:
    from emulator.traffic.analysis import gap_pacing_error_ns

    # received 0-3, 6-9 (4 and 5 lost: one gap, after 3 up to 6); the sender left
    # probe 2 late by 90 ms (no gap there) and probes 5 and 6 by 3 and 2 ms (inside it)
    got = records([(k, k, k + 2.0) for k in (0, 1, 2, 3, 6, 7, 8, 9)])
    late = [[2, 90_000_000], [5, 3_000_000], [6, 2_000_000]]
    assert gap_pacing_error_ns(got, 10, MS, late) == 3_000_000 + 2_000_000 + MS
    # nothing lost: no gap for any lateness to lengthen, only the sub-interval rest
    whole = records([(k, k, k + 2.0) for k in range(10)])
    assert gap_pacing_error_ns(whole, 10, MS, late) == MS
