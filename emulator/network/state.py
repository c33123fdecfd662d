"""The record of what one run created, kept on disk so any process can undo it.

A run lives in `{root}/{prefix}/` (root defaults to /run/caspian, a tmpfs:
a reboot, which also destroys every namespace, clears it). `state.json`
lists every object the run created, each written down right after the
kernel confirmed it, plus free-form metadata for later CLI commands.
Teardown removes exactly what is listed here and nothing else.

Writes are atomic (temporary file, fsync, rename) and serialized with an
flock on `{dir}/lock`, so several processes (the builder, `caspian exec`,
`caspian down`) may record into one run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from typing import Any, Iterator

from emulator.errors import TestbedError
from emulator.network.kernel import NETNS_RUN_DIR
from emulator.network.naming import is_prefix, new_prefix, of_run

DEFAULT_ROOT = "/run/caspian"
STATE_FILE = "state.json"
LOCK_FILE = "lock"

#: the kinds of object a run records, and the fields each needs
RECORD_KINDS: dict[str, tuple[str, ...]] = {
    "netns": ("name",),
    "process": ("pid", "starttime", "role"),
    "file": ("path",),
}


class RunState:
    """One run's directory, records and metadata."""

    def __init__(self, directory: str, prefix: str, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        self.dir = directory
        self.prefix = prefix
        self.records = records
        self.meta = meta

    def __repr__(self) -> str:
        return f"RunState({self.dir!r}, {len(self.records)} records)"

    # --- making and finding runs -------------------------------------------------

    @classmethod
    def create(cls, root: str = DEFAULT_ROOT, prefix: str | None = None) -> "RunState":
        """Make a new run directory under `root` with a fresh (or the given) prefix.

        A random prefix is retried until neither a run directory nor a
        namespace of that prefix exists; a given prefix that is taken raises
        TestbedError.
        """
        os.makedirs(root, mode=0o755, exist_ok=True)
        for _ in range(100):
            candidate = prefix or new_prefix()
            if not is_prefix(candidate):
                raise TestbedError(f"run prefix {candidate!r} is malformed (want csp + 5 hex digits)")
            directory = os.path.join(root, candidate)
            if not _netns_with_prefix(candidate):
                try:
                    os.mkdir(directory, 0o755)
                except FileExistsError:
                    pass
                else:
                    run = cls(directory, candidate, [], {})
                    run.meta["created"] = time.time()
                    run.meta["builder_pid"] = os.getpid()
                    try:
                        with run._locked():
                            run._write()
                    except BaseException:
                        # nothing recorded yet: the empty directory is all there is
                        with contextlib.suppress(OSError):
                            for name in os.listdir(directory):
                                os.unlink(os.path.join(directory, name))
                            os.rmdir(directory)
                        raise
                    return run
            if prefix is not None:
                raise TestbedError(f"run prefix {prefix!r} is already in use")
        raise TestbedError(f"no free run prefix found under {root}")

    @classmethod
    def load(cls, directory: str) -> "RunState":
        """The run recorded in `directory` (records empty if state.json is missing)."""
        prefix = os.path.basename(os.path.normpath(directory))
        if not is_prefix(prefix):
            raise TestbedError(f"{directory} is not a caspian run directory (its name is not a run prefix)")
        run = cls(directory, prefix, [], {})
        run.reload()
        return run

    @classmethod
    def all(cls, root: str = DEFAULT_ROOT) -> list["RunState"]:
        """Every run recorded under `root`, oldest directory first."""
        try:
            entries = os.listdir(root)
        except FileNotFoundError:
            return []
        runs = []
        for entry in entries:
            path = os.path.join(root, entry)
            if is_prefix(entry) and os.path.isdir(path):
                try:
                    runs.append(cls.load(path))
                except FileNotFoundError:
                    continue  # removed by a concurrent teardown
        runs.sort(key=lambda run: run.meta.get("created", 0.0))
        return runs

    # --- recording -----------------------------------------------------------------

    @property
    def state_path(self) -> str:
        """Path of state.json."""
        return os.path.join(self.dir, STATE_FILE)

    def record(self, kind: str, **data: Any) -> dict[str, Any]:
        """Write down that this run created an object (call right after creating it)."""
        missing = [name for name in RECORD_KINDS.get(kind, ()) if name not in data]
        if kind not in RECORD_KINDS or missing:
            raise ValueError(f"bad record {kind!r} {data!r}: kinds {list(RECORD_KINDS)}, missing {missing}")
        entry = {"kind": kind, **data, "time": time.time()}
        with self._locked():
            self.reload()
            self.records.append(entry)
            self._write()
        return entry

    def record_all(self, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`record` for many objects of one kind with one write of the state file.

        Each write rewrites and fsyncs the whole file: recording a hundred
        namespaces one by one costs a hundred such writes.
        """
        missing = [name for name in RECORD_KINDS.get(kind, ()) for data in items if name not in data]
        if kind not in RECORD_KINDS or missing:
            raise ValueError(f"bad records {kind!r}: kinds {list(RECORD_KINDS)}, missing {sorted(set(missing))}")
        now = time.time()
        entries = [{"kind": kind, **data, "time": now} for data in items]
        with self._locked():
            self.reload()
            self.records.extend(entries)
            self._write()
        return entries

    def forget_all(self, entries: list[dict[str, Any]]) -> None:
        """`forget` for many records with one write of the state file."""
        if not entries:
            return
        with self._locked():
            self.reload()
            self.records = [r for r in self.records if not any(_same(r, entry) for entry in entries)]
            self._write()

    def forget(self, entry: dict[str, Any]) -> None:
        """Drop a record whose object is gone (teardown calls this)."""
        with self._locked():
            self.reload()
            self.records = [r for r in self.records if not _same(r, entry)]
            self._write()

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serializable metadata value (topology source, engine socket...)."""
        with self._locked():
            self.reload()
            self.meta[key] = value
            self._write()

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A metadata value, or `default`."""
        return self.meta.get(key, default)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Records of one kind, oldest first."""
        return [r for r in self.records if r["kind"] == kind]

    # --- internals -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(os.path.join(self.dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise TestbedError(f"run directory {self.dir} is gone (torn down?)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def reload(self) -> None:
        """Re-read records and metadata from disk (other processes may have added some)."""
        try:
            with open(self.state_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            if not os.path.isdir(self.dir):
                raise
            return  # created but never written: nothing recorded
        except json.JSONDecodeError as exc:
            raise TestbedError(f"{self.state_path} is corrupt ({exc}); remove what it lists by hand") from exc
        self.records = list(data.get("records", []))
        self.meta = dict(data.get("meta", {}))

    def _write(self) -> None:
        data = {"prefix": self.prefix, "meta": self.meta, "records": self.records}
        tmp = self.state_path + f".tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # some filesystems cannot fsync a directory
                raise
        finally:
            os.close(dir_fd)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records name the same object (ignoring when they were written)."""
    return {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in b.items() if k != "time"}


def _netns_with_prefix(prefix: str) -> bool:
    """Whether any named namespace of this prefix exists (a collision with another run)."""
    try:
        return any(of_run(prefix, name) for name in os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return False
