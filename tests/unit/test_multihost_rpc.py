"""The channel to the agents (emulator.multihost.rpc): sealed requests, refusals, the secret file; and the agents file (no root)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emulator.errors import InputError, ScenarioError
from emulator.model.placement import Placement
from emulator.multihost.coordinator import check_agents, read_agents, resolve_placement
from emulator.multihost.rpc import (CLOCK_SKEW_S, AgentClient, AgentRefused, Dispatcher, new_secret, parse_address,
                                    read_secret, seal, unseal, write_secret)
from emulator.scenario.loader import parse_scenario

KEY = bytes.fromhex(new_secret())


def _dispatcher() -> Dispatcher:
    return Dispatcher(KEY, {"add": lambda args: {"sum": args["x"] + args["y"]},
                            "boom": lambda args: {"never": 1 // 0}})


def _client(key: bytes = KEY) -> AgentClient:
    return AgentClient("host1", ("198.18.250.1", 7390), key)


def test_a_sealed_request_is_answered_and_the_answer_checked() -> None:
    agent, client = _dispatcher(), _client()
    line, nonce = client.request("add", {"x": 2, "y": 3})
    assert client.result("add", nonce, agent.answer(line)) == {"sum": 5}
    # an unknown operation and a failing one are answered, sealed, as failures
    line, nonce = client.request("launch", {})
    with pytest.raises(AgentRefused, match="unknown operation 'launch'.*add, boom"):
        client.result("launch", nonce, agent.answer(line))
    line, nonce = client.request("boom", {})
    with pytest.raises(AgentRefused, match="failed boom: the agent failed: ZeroDivisionError"):
        client.result("boom", nonce, agent.answer(line))


def test_a_request_under_another_secret_or_tampered_is_refused() -> None:
    agent = _dispatcher()
    stranger = _client(bytes.fromhex(new_secret()))
    line, nonce = stranger.request("add", {"x": 1, "y": 1})
    reply = agent.answer(line)
    assert "sum" not in reply.decode() and "mac" not in json.loads(reply)   # nothing run, nothing sealed
    with pytest.raises(AgentRefused, match="unauthenticated.*same secret file"):
        stranger.result("add", nonce, reply)
    # the right key but the body changed after sealing: the mac no longer holds
    line, _ = _client().request("add", {"x": 1, "y": 1})
    message = json.loads(line)
    message["body"] = message["body"].replace('"x":1', '"x":1000')
    assert json.loads(agent.answer(json.dumps(message).encode()))["rejected"].startswith("unauthenticated")
    assert json.loads(agent.answer(b"not json\n"))["rejected"] == "not a sealed message"


def test_a_replayed_or_stale_request_is_refused() -> None:
    agent, client = _dispatcher(), _client()
    line, nonce = client.request("add", {"x": 1, "y": 2})
    assert client.result("add", nonce, agent.answer(line)) == {"sum": 3}
    with pytest.raises(AgentRefused, match="replayed"):
        client.result("add", nonce, agent.answer(line))
    # a request sealed now, judged by an agent whose clock is 31 s ahead
    line, nonce = client.request("add", {"x": 1, "y": 2})
    body = unseal(KEY, line)
    with pytest.raises(AgentRefused, match=r"clock is 31 s behind the agent's"):
        client.result("add", nonce, agent.answer(line, now=body["time"] + CLOCK_SKEW_S + 1))


def test_an_answer_to_another_request_or_unsealed_is_not_taken() -> None:
    agent, client = _dispatcher(), _client()
    first, first_nonce = client.request("add", {"x": 1, "y": 1})
    second, _ = client.request("add", {"x": 5, "y": 5})
    with pytest.raises(AgentRefused, match="another request"):
        client.result("add", first_nonce, agent.answer(second))
    forged = seal(bytes.fromhex(new_secret()), {"re": first_nonce, "ok": True, "result": {"sum": 2}})
    with pytest.raises(AgentRefused, match="not sealed with the run's secret"):
        client.result("add", first_nonce, forged)


def test_the_secret_file_is_private_and_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_secret(path, new_secret())
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert len(read_secret(path)) == 32
    with pytest.raises(FileExistsError):
        write_secret(path, new_secret())          # never overwritten
    os.chmod(path, 0o644)
    with pytest.raises(InputError, match="mode 0644: others may read it.*chmod 600"):
        read_secret(path)
    short = tmp_path / "short"
    write_secret(short, "ab" * 16)
    with pytest.raises(InputError, match="16 bytes, under the 32"):
        read_secret(short)
    words = tmp_path / "words"
    write_secret(words, "not hex at all")
    with pytest.raises(InputError, match="does not hold hex"):
        read_secret(words)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "secret")
    with pytest.raises(InputError, match="cannot open"):
        read_secret(link)                          # not followed: the file named is the file checked
    with pytest.raises(InputError, match="no such secret file"):
        read_secret(tmp_path / "missing")


def test_addresses_are_host_and_port() -> None:
    assert parse_address("198.18.250.1:7400", "x") == ("198.18.250.1", 7400)
    assert parse_address("198.18.250.1", "x") == ("198.18.250.1", 7390)
    assert parse_address("[2001:2::1]:7400", "x") == ("2001:2::1", 7400)
    for bad in ("198.18.250.1:0", "198.18.250.1:99999", ":7390", "h:p"):
        with pytest.raises(InputError, match="is not an address"):
            parse_address(bad, "x")


PLACED = """
nodes:
  a: {role: router}
  b: {role: router}
  c: {role: router}
links:
  a-b: {ends: [a, b], delay: 5ms, rate: 10gbit}
  b-c: {ends: [b, c], delay: 5ms, rate: 100mbit}
placement: 2
"""


def test_the_agents_file_is_checked_against_the_placement(tmp_path: Path) -> None:
    topology = parse_scenario(PLACED, source="<placed>", across_machines=True).topology
    placement = resolve_placement(topology)
    # the 10G link is kept inside a machine, the 100M one crosses
    assert placement == Placement((("host1", ("a", "b")), ("host2", ("c",))))
    good = tmp_path / "agents.yaml"
    good.write_text("agents:\n  host1: 198.18.250.1:7390\n  host2: 198.18.250.2\n")
    agents = read_agents(good)
    assert agents == {"host1": ("198.18.250.1", 7390), "host2": ("198.18.250.2", 7390)}
    check_agents(placement, agents, str(good))
    with pytest.raises(InputError, match="machine host2 runs nodes but has no agent.*add 'host2: ADDRESS:PORT'"):
        check_agents(placement, {"host1": agents["host1"]}, "agents.yaml")
    with pytest.raises(InputError, match="agent host3 has no nodes.*did you mean"):
        check_agents(placement, {**agents, "host3": agents["host1"]}, "agents.yaml")
    named = tmp_path / "named.yaml"
    named.write_text("agents:\n  host1: 198.18.250.1\n  host2: corridor-host2.caspian.svc:7400\n")
    assert read_agents(named)["host2"] == ("corridor-host2.caspian.svc", 7400)   # resolved when reached
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  host1: 198.18.250.1\n  host2: aktau_sumgait!:7390\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml:3: agents.host2: 'aktau_sumgait!' is neither an IP address nor a host name"):
        read_agents(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("agent:\n  host1: 198.18.250.1\n")
    with pytest.raises(ScenarioError, match=r"wrong.yaml:1: agent: unknown key 'agent'.*did you mean 'agents'"):
        read_agents(wrong)
