"""Exceptions of caspian. Each names the input at fault and says how to fix it.

The CLI turns every `InputError` and `EnvironmentProblem` into one line on
stderr and exit code 2; nothing else is caught there, so bugs stay loud.
"""

from __future__ import annotations


class CaspianError(Exception):
    """Base of every error caspian raises on purpose."""


class InputError(CaspianError):
    """Bad input from the user: a scenario file, a CLI argument, a parameter."""

    def __init__(self, message: str, *, where: str = "", fix: str = "") -> None:
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
