"""Exception types of the library; the CLI maps them to exit codes (DESIGN.md, CLI contract).

The library speaks in Python terms: a bad value raises `ParameterError` naming the
*parameter* (``threshold``, ``max_pixels``); only the CLI (`artenc.commands._flags.FLAG_OF`) turns
parameter names into flag names. Every class here is also a standard exception where one
fits (`ParameterError` is a `ValueError`), so ``except ValueError`` works for callers who
do not know artenc's types.
"""

from __future__ import annotations

import importlib


class ArtencError(Exception):
    """A failure with a message meant for the user. CLI exit code 1."""

    exit_code = 1


class UsageError(ArtencError):
    """Bad arguments or unusable input. CLI exit code 2."""

    exit_code = 2


class ParameterError(UsageError, ValueError):
    """A parameter of a library call has a bad value. CLI exit code 2.

    Attributes:
        param: the Python parameter name, e.g. ``"threshold"``.
        problem: what is wrong, phrased to follow the name, e.g.
            ``"must be a cosine similarity in [-1, 1], got 2.0"``.

    ``str(exc)`` is ``f"{param} {problem}"``; the CLI prints ``f"{flag} {problem}"``.
    """

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        self.problem = problem
        super().__init__(f"{param} {problem}")


class StoreError(UsageError):
    """A store is missing, corrupt, or would be mixed with another model's vectors."""


class WeightsUnavailableError(ArtencError):
    """Pretrained weights cannot be found locally nor downloaded."""

    exit_code = 2


class OptionalDependencyError(ArtencError, ImportError):
    """An optional package is needed for this feature but not installed."""

    exit_code = 2


def require(module: str, extra: str):
    """Import an optional module, or raise OptionalDependencyError with the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"this feature needs the '{module}' package: pip install 'artenc[{extra}]'"
        ) from exc
