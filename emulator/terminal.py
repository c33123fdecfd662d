"""What reaches the terminal: exit codes and one escaped line per answer.

Shared by every command module (emulator.cli, emulator.cli_testbed), so the
one-line contract is written once: control characters in anything printed are
escaped (`\\x1b`), so a file or a tool's output cannot drive the terminal.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

from emulator.errors import EnvironmentProblem

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: Ctrl-C, as a shell reports a process SIGINT ended
EXIT_INTERRUPTED = 130
#: an error line is cut to this many characters (the crash log keeps it whole)
MAX_LINE_CHARS = 1000


# ---------------------------------------------------------------- what reaches the terminal

def printable(text: str) -> str:
    """`text` with every non-printable character escaped as Python writes it
    (a newline as `\\n`, ESC as `\\x1b`), so it is one line that cannot
    move the cursor, retitle the terminal or hide what precedes it."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _line(text: str) -> str:
    """One printable line of at most MAX_LINE_CHARS characters."""
    text = printable(text)
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS - 40] + f"...[{len(text) - MAX_LINE_CHARS + 40} more characters]"
    return text


def say(text: str) -> None:
    """Print one line on stderr (escaped); never raises (stderr may be closed)."""
    try:
        print(_line(text), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def printable_data(value: Any) -> Any:
    """A copy of `value` (dataclasses, dicts, lists, tuples) with every string
    made `printable`: for tables printed from data a file or a tool supplied."""
    if isinstance(value, str):
        return printable(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: printable_data(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(printable_data(v) for v in value)
    return value


def root_required() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("caspian needs root for network namespaces and AF_PACKET (run it with sudo)")
