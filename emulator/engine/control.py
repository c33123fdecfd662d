"""The engine process's control channel: JSON lines over a Unix socket.

One request per connection: `{"op": "stats"}` → `{"ok": true, "result": ...}`.
Used by `caspian link/stats/down`, by the Testbed API and by the tests; the
engine process answers with `EngineServer` (emulator.engine.daemon).
"""

from __future__ import annotations

import json
import socket
from typing import Any

from emulator.errors import EngineError, InputError
from emulator.model.linkparams import LinkParams

#: ops the engine process understands
OPS = ("ping", "stats", "params", "set", "cut", "restore", "schedule", "schedule_status",
       "set_fidelity", "fidelity", "set_probe_taps", "probe_taps", "capture_start", "capture_status",
       "capture_stop", "shutdown")


class EngineClient:
    """Talks to one running engine process."""

    def __init__(self, socket_path: str, *, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def request(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; raises on an engine-side error."""
        message = json.dumps({"op": op, **args}).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.socket_path)
                sock.sendall(message)
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise EngineError(
                f"no engine answers at {self.socket_path} ({exc.strerror})",
                ) from exc
        except socket.timeout as exc:
            raise EngineError(f"the engine at {self.socket_path} did not answer in {self.timeout_s:g} s") from exc
        if not reply:
            raise EngineError(f"the engine at {self.socket_path} closed the connection without answering")
        answer = json.loads(reply)
        if not answer.get("ok"):
            if answer.get("kind") == "InputError":
                raise InputError(answer.get("error", "rejected"))
            raise EngineError(answer.get("error", "engine error"))
        return answer.get("result")

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def params(self, link: str, direction: str = "a_to_b") -> LinkParams:
        return LinkParams.from_dict(self.request("params", link=link, direction=direction))

    def set(self, link: str, params: LinkParams, direction: str = "both") -> None:
        self.request("set", link=link, direction=direction, params=params.to_dict())

    def cut(self, link: str, direction: str = "both", *, carrier: bool = False) -> None:
        """Cut a link now; `carrier` also takes its interfaces down in both nodes."""
        self.request("cut", link=link, direction=direction, carrier=carrier)

    def restore(self, link: str, direction: str = "both") -> None:
        self.request("restore", link=link, direction=direction)

    def schedule(self, events: list[dict[str, Any]]) -> None:
        """Hand the engine a timeline (see FastPath.schedule); replaces the previous one."""
        self.request("schedule", events=events)

    def schedule_status(self) -> list[dict[str, Any]]:
        """The scheduled events with when the engine applied each (FastPath.schedule_status)."""
        return self.request("schedule_status")

    def set_fidelity(self, epoch_ns: int, bin_ns: int, stall_threshold_ns: int) -> None:
        """Start the engine's lateness time bins at `epoch_ns` and its stall count (FastPath.set_fidelity)."""
        self.request("set_fidelity", epoch_ns=epoch_ns, bin_ns=bin_ns, stall_threshold_ns=stall_threshold_ns)

    def fidelity(self) -> dict[str, Any]:
        """The engine's own timing errors (FastPath.fidelity)."""
        return self.request("fidelity")

    def set_probe_taps(self, taps: list[dict[str, Any]]) -> None:
        """Stamp probes at the first and last links in the engine (FastPath.set_probe_taps)."""
        self.request("set_probe_taps", taps=taps)

    def probe_taps(self, taps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The engine's probe stamps of each tap (FastPath.probe_taps)."""
        return self.request("probe_taps", taps=taps)

    def capture_start(self, targets: list[dict[str, Any]], path: str, *, count: int | None = None,
                      snaplen: int = 128) -> dict[str, Any]:
        """Capture link directions into a pcapng file (FastPath.capture_start); `path` absolute."""
        return self.request("capture_start", targets=targets, path=path, count=count, snaplen=snaplen)

    def capture_status(self) -> dict[str, Any]:
        """The running capture's frames so far (FastPath.capture_status)."""
        return self.request("capture_status")

    def capture_stop(self) -> dict[str, Any]:
        """Stop the capture, its file complete; its summary (FastPath.capture_stop)."""
        return self.request("capture_stop")

    def shutdown(self) -> None:
        self.request("shutdown")
