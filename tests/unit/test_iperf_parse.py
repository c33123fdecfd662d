"""iperf3 argv and JSON parsing, on reports recorded from iperf3 3.12 (trimmed to the fields used).

Recorded once over loopback: `iperf3 -s -1 -J` and
`iperf3 -c 127.0.0.1 -J --get-server-output -4 -t 2 [-C cubic -b 50M | -u -b 10M -l 1200]`.
"""

from __future__ import annotations

import pytest

from emulator.scenario.scenario import TRAFFIC_METRICS
from emulator.traffic.iperf import client_argv, parse_client_json, server_argv

TCP_REPORT = r"""
{
 "start": {"version": "iperf 3.12", "test_start": {"protocol": "TCP", "blksize": 131072, "duration": 2, "target_bitrate": 50000000}},
 "intervals": [
  {"sum": {"start": 0, "end": 1.000088, "seconds": 1.0000879764556885, "bytes": 6291456, "bits_per_second": 50327220.38952547, "omitted": false}},
  {"sum": {"start": 1.000088, "end": 2.00009, "seconds": 1.0000020265579224, "bytes": 6291456, "bits_per_second": 50331546.0002067, "omitted": false}}
 ],
 "end": {
  "sum_sent": {"start": 0, "end": 2.00009, "seconds": 2.00009, "bytes": 12582912, "bits_per_second": 50329383.177757, "retransmits": 0, "sender": true},
  "sum_received": {"start": 0, "end": 2.00057, "seconds": 2.00057, "bytes": 12582912, "bits_per_second": 50317307.5673433, "sender": true}
 },
 "server_output_json": {
  "intervals": [
   {"sum": {"start": 0, "end": 1.000081, "seconds": 1.000080943107605, "bytes": 6291456, "bits_per_second": 50327574.32973553, "omitted": false}},
   {"sum": {"start": 1.000081, "end": 2.000075, "seconds": 0.9999939799308777, "bytes": 6291456, "bits_per_second": 50331951.00182409, "omitted": false}}
  ]
 }
}
"""

UDP_REPORT = r"""
{
 "start": {"version": "iperf 3.12", "test_start": {"protocol": "UDP", "blksize": 1200, "duration": 2, "target_bitrate": 10000000}},
 "intervals": [
  {"sum": {"start": 0, "end": 1.000114, "seconds": 1.0001139640808105, "bytes": 1249200, "bits_per_second": 9992461.218342217, "omitted": false}},
  {"sum": {"start": 1.000114, "end": 2.000085, "seconds": 0.9999709725379944, "bytes": 1250400, "bits_per_second": 10003490.375936812, "omitted": false}}
 ],
 "end": {
  "sum_sent": {"start": 0, "end": 2.000085, "seconds": 2.000085, "bytes": 2499600, "bits_per_second": 9997975.086058844, "jitter_ms": 0, "lost_packets": 0, "packets": 2083, "lost_percent": 0, "sender": true},
  "sum_received": {"start": 0, "end": 2.000134, "seconds": 2.000134, "bytes": 2499600, "bits_per_second": 9997730.15207981, "jitter_ms": 0.0062964931569652076, "lost_packets": 0, "packets": 2083, "lost_percent": 0, "sender": false}
 },
 "server_output_json": {
  "intervals": [
   {"sum": {"start": 0, "end": 1.000077, "seconds": 1.00007700920105, "bytes": 1249200, "bits_per_second": 9992830.46011004, "omitted": false}},
   {"sum": {"start": 1.000077, "end": 2.000134, "seconds": 1.0000569820404053, "bytes": 1250400, "bits_per_second": 10002630.029731486, "omitted": false}}
  ]
 }
}
"""


def test_tcp_report_metrics_and_receiver_series() -> None:
    result = parse_client_json(TCP_REPORT, "tcp")
    assert set(result.metrics) == set(TRAFFIC_METRICS["tcp"])
    assert result.metrics["throughput_mbps"] == pytest.approx(50.3173075673433)  # sum_received
    assert result.metrics["retransmits"] == 0.0
    assert result.metrics["bytes"] == 12582912.0
    assert result.series_side == "server"
    assert result.series == [(1.000081, pytest.approx(50.32757432973553)), (2.000075, pytest.approx(50.33195100182409))]


def test_udp_report_metrics_come_from_the_receiver() -> None:
    result = parse_client_json(UDP_REPORT, "udp")
    assert set(result.metrics) == set(TRAFFIC_METRICS["udp"])
    assert result.metrics["throughput_mbps"] == pytest.approx(9.99773015207981)
    assert result.metrics["loss_pct"] == 0.0
    assert result.metrics["jitter_ms"] == pytest.approx(0.0062964931569652076)
    assert result.metrics["bytes"] == 2499600.0
    assert [t for t, _ in result.series] == [1.000077, 2.000134]


def test_without_server_output_the_series_is_the_clients() -> None:
    import json

    report = json.loads(UDP_REPORT)
    del report["server_output_json"]
    report["intervals"][0]["sum"]["omitted"] = True  # -O: omitted intervals are left out
    result = parse_client_json(json.dumps(report), "udp")
    assert result.series_side == "client"
    assert result.series == [(2.000085, pytest.approx(10.003490375936812))]


def test_errors_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unable to connect"):
        parse_client_json('{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server"}', "tcp")
    with pytest.raises(ValueError, match="not JSON"):
        parse_client_json("iperf3: error", "tcp")


def test_missing_fields_give_none() -> None:
    result = parse_client_json('{"start": {}, "intervals": [], "end": {}}', "udp")
    assert result.metrics == dict.fromkeys(TRAFFIC_METRICS["udp"])
    assert result.series == []


def test_argv() -> None:
    assert server_argv(5301) == ["iperf3", "-s", "-1", "-J", "-p", "5301"]
    tcp = client_argv("right", 5301, "tcp", 3, 0, False, 0)
    assert tcp == ["iperf3", "-c", "right", "-p", "5301", "-J", "--get-server-output", "-4", "-t", "3", "-i", "1",
                   "-C", "cubic"]
    udp = client_argv("right", 5302, "udp", 2.5, 10e6, True, 1200)
    assert udp[-5:] == ["-u", "-b", "10000000", "-l", "1200"] and "-6" in udp and "2.5" in udp
    with pytest.raises(ValueError):
        client_argv("right", 5302, "udp", 2, 0, False, 1200)
    with pytest.raises(ValueError):
        client_argv("right", 5302, "probe", 2, 1, False, 0)
