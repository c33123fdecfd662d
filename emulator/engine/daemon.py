"""The engine process: `python -m emulator.engine.daemon CONFIG.json`.

It enters the wire namespace, opens the link ends' sockets, runs the fast path
in a thread and answers control requests on a Unix socket until told to shut
down (or SIGTERM/SIGINT). The testbed records its PID; teardown stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any

from emulator.engine.control import OPS
from emulator.engine.capture import DEFAULT_SNAPLEN
from emulator.engine.fastpath import EngineOptions, FastPath, LinkSpec
from emulator.errors import CaspianError, InputError
from emulator.model.linkparams import LinkParams
from emulator.network.kernel import enter_netns


class EngineServer:
    """Serves control requests for one FastPath."""

    def __init__(self, fastpath: FastPath, socket_path: str) -> None:
        self.fastpath = fastpath
        self.socket_path = socket_path
        self.started_ns = time.time_ns()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self._listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self._listener.listen(16)
        self._listener.settimeout(0.2)

    def serve_forever(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    self.fastpath.check()
                    continue
                with conn:
                    conn.settimeout(5)
                    self._answer(conn)
        finally:
            self._listener.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass

    def stop(self) -> None:
        self._stop.set()

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            request = json.loads(data)
            result = self.handle(request)
            reply = {"ok": True, "result": result}
        except InputError as exc:
            reply = {"ok": False, "kind": "InputError", "error": str(exc)}
        except (CaspianError, ValueError, KeyError, TypeError) as exc:
            # CaspianError before OSError: the engine's EngineSocketError and
            # EngineTimeoutError (a shard's loop did not answer a counter
            # snapshot) are OSErrors too, and are refusals to report, not a
            # client that went away. ValueError, KeyError, TypeError: a request
            # whose fields do not parse (LinkParams.from_dict, int()).
            reply = {"ok": False, "kind": type(exc).__name__, "error": str(exc)}
        except OSError:
            return  # client went away
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass

    def handle(self, request: dict[str, Any]) -> Any:
        """Carry out one request (also callable in-process, for tests)."""
        op = request.get("op")
        if op not in OPS:
            raise InputError(f"unknown engine op {op!r}", fix=f"use one of {', '.join(OPS)}")
        fp = self.fastpath
        direction = request.get("direction", "both")
        if op == "ping":
            return {"pid": os.getpid(), "started_ns": self.started_ns, "scheduling": fp.scheduling}
        if op == "stats":
            return fp.stats()
        if op == "params":
            return fp.params(request["link"], request.get("direction", "a_to_b")).to_dict()
        if op == "set":
            fp.set_params(request["link"], LinkParams.from_dict(request["params"]), direction)
            return None
        if op == "cut":
            fp.set_cut(request["link"], True, direction, carrier=bool(request.get("carrier", False)))
            return None
        if op == "restore":
            fp.set_cut(request["link"], False, direction)
            return None
        if op == "schedule":
            fp.schedule(list(request["events"]))
            return None
        if op == "schedule_status":
            return fp.schedule_status()
        if op == "set_fidelity":
            fp.set_fidelity(int(request["epoch_ns"]), int(request["bin_ns"]), int(request["stall_threshold_ns"]))
            return None
        if op == "fidelity":
            return fp.fidelity()
        if op == "set_probe_taps":
            fp.set_probe_taps(list(request["taps"]))
            return None
        if op == "probe_taps":
            return fp.probe_taps(list(request["taps"]))
        if op == "capture_start":
            return fp.capture_start(list(request["targets"]), str(request["path"]),
                                    count=request.get("count"), snaplen=int(request.get("snaplen", DEFAULT_SNAPLEN)))
        if op == "capture_status":
            return fp.capture_status()
        if op == "capture_stop":
            return fp.capture_stop()
        if op == "shutdown":
            self.stop()
            return None
        raise AssertionError(op)


#: PM QoS: while a process holds this open with a value written, no CPU
#: enters an idle state whose exit latency exceeds the value (µs)
CPU_DMA_LATENCY = "/dev/cpu_dma_latency"


def hold_cpu_latency_qos(fastpath: FastPath) -> int | None:
    """Ask for zero CPU wake-up latency for the engine's lifetime; the fd to keep open.

    A halted vCPU takes tens of µs to wake for a frame (the host must run it
    again); with the request held the guest's idle loop polls instead. The
    outcome is recorded in `fastpath.scheduling` (and the report's fidelity).
    """
    try:
        fd = os.open(CPU_DMA_LATENCY, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        fastpath.scheduling["cpu_latency_qos"] = f"not held ({exc.strerror})"
        return None
    try:
        os.write(fd, struct.pack("i", 0))
    except OSError as exc:
        os.close(fd)
        fastpath.scheduling["cpu_latency_qos"] = f"not held ({exc.strerror})"
        return None
    fastpath.scheduling["cpu_latency_qos"] = "0 us held"
    return fd


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m emulator.engine.daemon CONFIG.json", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        config = json.load(fh)
    enter_netns(config["wire_netns"])
    links = [LinkSpec.from_dict(item) for item in config["links"]]
    fastpath = FastPath(links, EngineOptions.from_dict(config.get("options", {})))
    server = EngineServer(fastpath, config["control_socket"])

    def on_signal(signum: int, _frame: Any) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    qos_fd = hold_cpu_latency_qos(fastpath) if fastpath.options.cpu_latency_qos else None
    fastpath.start()
    # The control thread answers cut/restore/set: under a saturating load on
    # the other CPU a normal-priority thread waits tens of ms for its turn,
    # and a 5 s cut would last 4.97 s. Real-time priority below the loop's
    # keeps control requests to well under a millisecond.
    if fastpath.options.realtime_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(max(1, fastpath.options.realtime_priority // 2)))
        except OSError:
            pass  # unprivileged: control requests are only slower
    try:
        server.serve_forever()
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        fastpath.close()
        if qos_fd is not None:
            os.close(qos_fd)  # the kernel drops the request with the last close
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
