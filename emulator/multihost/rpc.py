"""The channel between the coordinator and the caspian agents: authenticated JSON lines over TCP.

Each message is one line, `{"body": "<JSON text>", "mac": "<hex>"}`, the mac
HMAC-SHA256 (RFC 2104) of the body under the run's shared secret. A request's
body holds the operation, its arguments, a fresh nonce and the sender's
clock; the agent refuses a bad mac (compared in constant time), a clock more
than CLOCK_SKEW_S away from its own, and a nonce it has seen within twice
that, so a captured request can be neither forged nor replayed. Its reply is
sealed the same way and names the request's nonce (`re`), so the coordinator
takes no answer that is not the agent's answer to this request.

Why not SSH: Kubernetes pods have no SSH server, and the engine's control
protocol is already JSON lines (emulator.engine.control). Why not TLS: a
shared secret handed out with the run (a file of mode 0600, a Kubernetes
Secret) needs no certificates, and nothing sent here is confidential (node
names, port numbers, echo figures); only who may ask matters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import socketserver
import stat
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from emulator.errors import CaspianError, EnvironmentProblem, InputError, TestbedError

#: The TCP port agents listen on unless told otherwise (unassigned by IANA).
DEFAULT_PORT = 7390
#: The longest line either side reads: far over any request or reply here (an
#: echo's 10,000 round trips are ~150 kB); a longer one ends the connection.
MAX_LINE_BYTES = 1 << 20
#: How far a request's clock may be from the agent's. NTP keeps machines within
#: milliseconds; 30 s allows for a host without it while bounding replays.
CLOCK_SKEW_S = 30.0
#: The shortest secret taken: 32 random bytes, HMAC-SHA256's own block of strength (RFC 2104 sec. 3).
MIN_SECRET_BYTES = 32
#: How long the agent keeps a connection that sends nothing (a coordinator sends its request at once).
IDLE_TIMEOUT_S = 60.0
#: Protocol version, in every hello: a coordinator refuses an agent of another.
PROTOCOL = 1

#: An operation: its arguments in, its result out (both JSON objects).
Operation = Callable[[dict[str, Any]], dict[str, Any]]


class AgentUnreachable(EnvironmentProblem):
    """An agent that does not answer at its address (not started, firewalled, wrong port)."""


class AgentRefused(TestbedError):
    """An agent that answered but refused the request or failed it."""


class RequestRejected(Exception):
    """Raised inside the agent for a request it will not run (bad mac, stale, replayed)."""


def new_secret() -> str:
    """A fresh shared secret, as the hex text a secret file holds."""
    return secrets.token_hex(MIN_SECRET_BYTES)


def write_secret(path: str | Path, secret: str) -> None:
    """Write `secret` to a new file at `path` readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")


def read_secret(path: str | Path) -> bytes:
    """The secret in the file at `path`: owned by this user, mode 0600 or tighter,
    at least MIN_SECRET_BYTES bytes of hex text; else a one-line InputError."""
    where = str(path)
    fix = f"make one with 'caspian secret {path}' (mode 0600)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise InputError("no such secret file", where=where, fix=fix) from None
    except OSError as exc:
        raise InputError(f"cannot open the secret file: {exc.strerror}", where=where, fix=fix) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError("the secret file is not a regular file", where=where, fix=fix)
        if info.st_uid != os.getuid():
            raise InputError(f"the secret file belongs to uid {info.st_uid}, not to this user ({os.getuid()})",
                             where=where, fix="use a secret file of your own")
        if info.st_mode & 0o077:
            raise InputError(f"the secret file has mode {stat.S_IMODE(info.st_mode):04o}: others may read it",
                             where=where, fix=f"chmod 600 {path}")
        text = handle.read(4096).decode("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise InputError("the secret file does not hold hex text", where=where, fix=fix) from None
    if len(key) < MIN_SECRET_BYTES:
        raise InputError(f"the secret is {len(key)} bytes, under the {MIN_SECRET_BYTES} required",
                         where=where, fix=fix)
    return key


def seal(key: bytes, body: Mapping[str, Any]) -> bytes:
    """One message line: `body` as JSON and its HMAC-SHA256 under `key`."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    mac = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"body": text, "mac": mac}).encode() + b"\n"


def unseal(key: bytes, line: bytes) -> dict[str, Any]:
    """The body of a message line whose mac is right under `key` (RequestRejected otherwise)."""
    try:
        message = json.loads(line)
        text, mac = message["body"], message["mac"]
        if not isinstance(text, str) or not isinstance(mac, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise RequestRejected("not a sealed message") from None
    expected = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        raise RequestRejected("unauthenticated (the secret differs)")
    try:
        body = json.loads(text)
    except ValueError:
        raise RequestRejected("the body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestRejected("the body is not an object")
    return body


class NonceWindow:
    """The nonces seen in the last 2 x CLOCK_SKEW_S: a request older than that is refused by its clock."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, body: Mapping[str, Any], now: float) -> None:
        """Refuse (RequestRejected) a request whose clock is off or whose nonce was seen; remember it."""
        sent = body.get("time")
        nonce = body.get("nonce")
        if not isinstance(sent, (int, float)) or not isinstance(nonce, str) or len(nonce) < 16:
            raise RequestRejected("no time or nonce")
        if abs(now - sent) > CLOCK_SKEW_S:
            side = "behind" if sent < now else "ahead of"
            raise RequestRejected(f"its clock is {abs(now - sent):.0f} s {side} the agent's (over {CLOCK_SKEW_S:.0f} s: "
                                  "set both clocks by NTP)")
        with self._lock:
            for old in [n for n, t in self._seen.items() if t < now - 2 * CLOCK_SKEW_S]:
                del self._seen[old]
            if nonce in self._seen:
                raise RequestRejected("replayed (its nonce was seen before)")
            self._seen[nonce] = now


class Dispatcher:
    """Answers request lines sealed with `key` by running `operations` (the agent's side, no socket)."""

    def __init__(self, key: bytes, operations: Mapping[str, Operation]) -> None:
        self.key = key
        self.operations = dict(operations)
        self.nonces = NonceWindow()

    def answer(self, line: bytes, now: float | None = None) -> bytes:
        """The reply line to one request line."""
        try:
            body = unseal(self.key, line)
            self.nonces.check(body, time.time() if now is None else now)
        except RequestRejected as exc:
            # unsealed: the asker has no key, or a stale request; say only why
            return json.dumps({"rejected": str(exc)}).encode() + b"\n"
        nonce, op, args = body["nonce"], body.get("op"), body.get("args", {})
        if not isinstance(op, str) or op not in self.operations or not isinstance(args, dict):
            return seal(self.key, {"re": nonce, "ok": False,
                                   "error": f"unknown operation {op!r} (this agent has {', '.join(sorted(self.operations))})"})
        try:
            result = self.operations[op](args)
        except CaspianError as exc:
            return seal(self.key, {"re": nonce, "ok": False, "error": str(exc)})
        except Exception as exc:   # a bug in the agent: loud in its log, one line to the coordinator
            traceback.print_exc(file=sys.stderr)
            return seal(self.key, {"re": nonce, "ok": False, "error": f"the agent failed: {type(exc).__name__}: {exc}"})
        return seal(self.key, {"re": nonce, "ok": True, "result": result})


class AgentServer(socketserver.ThreadingTCPServer):
    """Serves a Dispatcher over TCP, one thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], key: bytes, operations: Mapping[str, Operation]) -> None:
        self.dispatcher = Dispatcher(key, operations)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Connection)


class _Connection(socketserver.StreamRequestHandler):
    server: AgentServer
    #: a connection that sends nothing for this long is closed, so an idle one holds no thread
    timeout = IDLE_TIMEOUT_S

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE_BYTES + 1)
            except OSError:       # the idle timeout, or the peer gone
                return
            if not line:
                return
            if len(line) > MAX_LINE_BYTES:
                self.wfile.write(json.dumps({"rejected": "line too long"}).encode() + b"\n")
                return
            self.wfile.write(self.server.dispatcher.answer(line))


class AgentClient:
    """Calls one agent's operations: a connection per call, each request sealed and its reply checked."""

    def __init__(self, machine: str, address: tuple[str, int], key: bytes, timeout_s: float = 30.0) -> None:
        self.machine = machine
        self.address = address
        self.key = key
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"agent of {self.machine} at {self.address[0]}:{self.address[1]}"

    def request(self, op: str, args: Mapping[str, Any]) -> tuple[bytes, str]:
        """The sealed request line for `op(args)`, and its nonce."""
        nonce = secrets.token_hex(16)
        return seal(self.key, {"op": op, "args": dict(args), "nonce": nonce, "time": time.time()}), nonce

    def result(self, op: str, nonce: str, line: bytes) -> dict[str, Any]:
        """The result in the agent's reply `line` to the request `nonce` (AgentRefused unless it is one)."""
        try:
            rejected = json.loads(line).get("rejected")
        except (ValueError, AttributeError):
            rejected = None
        if rejected is not None:
            raise AgentRefused(f"{self!r} refused {op}: {rejected}"
                               + (" (give both the same secret file)" if "secret" in str(rejected) else ""))
        try:
            body = unseal(self.key, line)
        except RequestRejected as exc:
            raise AgentRefused(f"{self!r} sent an answer to {op} that is not sealed with the run's secret: {exc}") from None
        if body.get("re") != nonce:
            raise AgentRefused(f"{self!r} sent an answer to another request than {op}")
        if not body.get("ok"):
            raise AgentRefused(f"{self!r} failed {op}: {body.get('error')}")
        result = body.get("result")
        return result if isinstance(result, dict) else {}

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """The result of `op(args)` on the agent (AgentUnreachable, AgentRefused)."""
        request, nonce = self.request(op, args)
        try:
            with socket.create_connection(self.address, timeout=self.timeout_s) as sock:
                sock.sendall(request)
                line = sock.makefile("rb").readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise AgentUnreachable(
                f"{self!r} does not answer: {reason} (start it there: caspian agent --machine {self.machine} "
                f"--listen {self.address[0]}:{self.address[1]} --secret-file FILE)") from None
        if not line:
            raise AgentUnreachable(f"{self!r} closed the connection without an answer to {op}")
        return self.result(op, nonce, line)


def parse_address(text: str, where: str) -> tuple[str, int]:
    """`HOST:PORT` or `HOST` (DEFAULT_PORT); `[v6]:PORT` for an IPv6 literal."""
    host, port_text = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"{text!r} is not an address", where=where, fix=f"write HOST:PORT, e.g. 198.18.0.1:{DEFAULT_PORT}")
    return host, int(port_text)
