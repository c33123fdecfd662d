"""Starting and stopping the engine process of a run.

The engine runs as its own process (`python -m emulator.engine.daemon`) so a
testbed can stay up after the command that built it returns (`caspian up`),
and so its loop thread never competes with the caller's Python for the GIL.
The process is recorded in the run's state (PID + start time) the moment it
exists, so teardown and `caspian down --all` can always stop it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from typing import Any

from emulator.engine.control import EngineClient
from emulator.engine.fastpath import EngineOptions, LinkSpec
from emulator.errors import EngineError
from emulator.network import processes
from emulator.network.state import RunState

START_TIMEOUT_S = 20.0
_instances = itertools.count()


class EngineProcess:
    """One engine process serving the links of one run."""

    def __init__(self, run: RunState, wire_netns: str, links: list[LinkSpec],
                 options: EngineOptions | None = None) -> None:
        self.run = run
        self.wire_netns = wire_netns
        self.links = links
        self.options = options or EngineOptions()
        self.proc: subprocess.Popen | None = None
        self.client: EngineClient | None = None
        self._record: dict[str, Any] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> EngineClient:
        """Start the process and wait until it answers on its control socket."""
        n = next(_instances)
        tag = f"engine-{os.getpid()}-{n}"
        control = os.path.join(self.run.dir, f"{tag}.sock")
        config_path = os.path.join(self.run.dir, f"{tag}.json")
        log_path = os.path.join(self.run.dir, f"{tag}.log")
        config = {
            "wire_netns": self.wire_netns,
            "control_socket": control,
            "links": [spec.to_dict() for spec in self.links],
            "options": self.options.__dict__,
        }
        with open(config_path, "x") as fh:
            json.dump(config, fh, indent=1)
        self.run.record("file", path=config_path)
        log = open(log_path, "ab")
        self.run.record("file", path=log_path)
        with log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emulator.engine.daemon", config_path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # outlives the command that started it (`caspian up`)
                close_fds=True,
            )
        starttime = processes.process_starttime(self.proc.pid)
        self._record = self.run.record("process", pid=self.proc.pid, starttime=starttime or 0, role="engine")
        self.run.set_meta("engine", {"pid": self.proc.pid, "control_socket": control, "log": log_path})
        client = EngineClient(control)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise EngineError(f"the engine process exited with {self.proc.returncode}: {tail(log_path)}")
            try:
                client.ping()
                break
            except EngineError:
                if time.monotonic() > deadline:
                    raise EngineError(f"the engine did not answer within {START_TIMEOUT_S:g} s: {tail(log_path)}")
                time.sleep(0.05)
        self.client = client
        return client

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the engine to shut down, kill it if it will not, forget its record."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.client is not None:
            try:
                self.client.shutdown()
            except EngineError:
                pass
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                # still closing its sockets in the kernel: killed, it exits when
                # that is done; teardown waits for it by its recorded PID
                return
        if self._record is not None:
            self.run.forget(self._record)
        self.proc = None
        self.client = None


def tail(path: str, lines: int = 5) -> str:
    """The last lines of a log file, joined on one line (for error messages)."""
    try:
        with open(path, errors="replace") as fh:
            return " | ".join(fh.read().strip().splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no log)"
