"""The caspian agent: what runs on each machine of a run across machines.

`caspian agent --machine NAME --listen ADDR:PORT --secret-file FILE` serves
the coordinator's requests (emulator.multihost.rpc, each authenticated with
the run's secret) until SIGTERM or SIGINT:

- `hello`: who it is (machine, protocol, caspian version, pid, kernel);
- `echo_start {peer, seconds}`: answer the underlay echoes of the one
  address `peer` for `seconds`, on a fresh UDP port it returns;
- `measure {to: [host, port], count}`: send `count` echoes there, one at a
  time, and return the round trips.

Building this machine's part of the network (its wire namespace, engine and
VXLAN devices, docs/multihost.md) is not served yet.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import signal
import sys
import threading
from typing import Any

import emulator
from emulator.errors import InputError
from emulator.multihost.echo import EchoResponder, measure_round_trips
from emulator.multihost.rpc import PROTOCOL, AgentServer, Operation, parse_address, read_secret


def _address(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InputError(f"{what} {value!r} is not an IP address", fix="give an IPv4 or IPv6 address") from None


def operations(machine: str, listen_host: str) -> dict[str, Operation]:
    """The agent's operations, for the machine `machine` listening at `listen_host`."""
    # echoes go from and to the address the agent listens on, the machine's
    # address on the underlay (unless it listens on every address)
    own = None if listen_host in ("0.0.0.0", "::", "") else listen_host

    def hello(_args: dict[str, Any]) -> dict[str, Any]:
        return {"machine": machine, "protocol": PROTOCOL, "version": emulator.__version__,
                "pid": os.getpid(), "kernel": platform.release()}

    def echo_start(args: dict[str, Any]) -> dict[str, Any]:
        peer = _address(args.get("peer"), "peer")
        seconds = args.get("seconds")
        if not isinstance(seconds, (int, float)):
            raise InputError(f"seconds {seconds!r} is not a number", fix="give the seconds to answer for")
        responder = EchoResponder(own or ("::" if ":" in peer else "0.0.0.0"), peer, float(seconds))
        return {"port": responder.port}

    def measure(args: dict[str, Any]) -> dict[str, Any]:
        to = args.get("to")
        count = args.get("count")
        if not (isinstance(to, list) and len(to) == 2 and isinstance(to[1], int)) or not isinstance(count, int):
            raise InputError(f"measure to {to!r} count {count!r}", fix="give to: [HOST, PORT] and count: N")
        trips = measure_round_trips((_address(to[0], "to"), to[1]), count, source=own)
        return {"rtts_ns": list(trips.rtts_ns), "lost": trips.lost}

    return {"hello": hello, "echo_start": echo_start, "measure": measure}


def serve(machine: str, listen: str, secret_file: str) -> int:
    """Run the agent until SIGTERM/SIGINT; 0 then. Bad input is an InputError (one line, exit 2)."""
    key = read_secret(secret_file)
    host, port = parse_address(listen, "--listen")
    try:
        server = AgentServer((host, port), key, operations(machine, host))
    except OSError as exc:
        raise InputError(f"cannot listen at {listen}: {exc.strerror}", where="--listen",
                         fix="give an address of this machine and a free port") from None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="agent", daemon=True)
    thread.start()
    bound_host, bound_port = server.socket.getsockname()[:2]
    print(f"caspian agent {machine}: listening at {bound_host}:{bound_port} (pid {os.getpid()})", flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
    print(f"caspian agent {machine}: stopped", file=sys.stderr, flush=True)
    return 0
