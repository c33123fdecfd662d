"""Exceptions of caspian. Each names the input at fault and says how to fix it.

The CLI turns every `InputError` and `EnvironmentProblem` into one line on
stderr and exit code 2; nothing else is caught there, so bugs stay loud.
"""

from __future__ import annotations

#: The longest `where`, message or fix an error keeps: a value echoed from a file
#: (a 1 MB key) must not become a 1 MB line on the terminal.
MAX_PART_CHARS = 500


def one_line(text: str) -> str:
    """`text` as one printable line: control and other non-printable characters
    escaped as repr() writes them (a newline as `\\n`, ESC as `\\x1b`), and cut
    to at most MAX_PART_CHARS, saying how many characters were left out.

    Idempotent (escapes are printable), so a message passed on is not escaped twice.
    """
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(text) > MAX_PART_CHARS:
        keep = MAX_PART_CHARS - 32  # room for the marker, so a cut text is not cut again
        text = f"{text[:keep]}...[{len(text) - keep} more characters]"
    return text


class CaspianError(Exception):
    """Base of every error caspian raises on purpose."""


class InputError(CaspianError):
    """Bad input from the user: a scenario file, a CLI argument, a parameter."""

    def __init__(self, message: str, *, where: str = "", fix: str = "") -> None:
        # Every part is made one printable line here, so no message anywhere can
        # break the CLI's one-line rule or write raw escape sequences to a terminal.
        where, message, fix = one_line(where), one_line(message), one_line(fix)
        self.where = where
        self.fix = fix
        self.bare_message = message
        text = f"{where}: {message}" if where else message
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text)


class UnitError(InputError):
    """A quantity with a missing, unknown or out-of-range unit (`5 parsecs`)."""


class ScenarioError(InputError):
    """A topology/scenario file that does not validate."""


class EnvironmentProblem(CaspianError):
    """The machine lacks something caspian needs (root, a kernel feature, a tool)."""


class TestbedError(CaspianError):
    """Building, controlling or tearing down a testbed failed."""

    __test__ = False  # not a pytest class despite the name prefix


class EngineError(TestbedError):
    """The fast-path engine refused a request or is not reachable."""


# What the compiled engine (emulator._engine) raises. Each also derives from the
# builtin the engine raised before it had its own types, so code that catches
# that builtin still catches it.


class EngineParamError(EngineError, ValueError):
    """A value the engine refuses: a parameter out of range, an order it cannot keep."""


class EngineRangeError(EngineParamError, OverflowError):
    """A number that does not fit the engine's C field (int64 ns, int32 bytes...)."""


class EngineDirectionError(EngineParamError, IndexError):
    """A direction index the engine does not have (directions are 2*link and 2*link+1)."""


class EngineStateError(EngineError, RuntimeError):
    """A request the engine cannot take in its present state (add a link while running,
    run twice, run with no links, capture before the ring exists)."""


class EngineSocketError(EngineError, OSError):
    """A file descriptor or kernel object the engine needs is not usable (a link end
    that is not a socket, eventfd or epoll refused)."""


class EngineTimeoutError(EngineError, TimeoutError):
    """The engine's loop did not answer in time (a counter snapshot)."""
