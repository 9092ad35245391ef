"""Exception types that the CLI maps to exit codes (see DESIGN.md, CLI contract)."""

from __future__ import annotations


class ArtencError(Exception):
    """A failure with a message meant for the user. CLI exit code 1."""

    exit_code = 1


class UsageError(ArtencError):
    """Bad arguments or unusable input. CLI exit code 2."""

    exit_code = 2


class StoreError(UsageError):
    """A store is missing, corrupt, or would be mixed with another model's vectors."""


class WeightsUnavailableError(ArtencError):
    """Pretrained weights cannot be found locally nor downloaded."""

    exit_code = 2


class OptionalDependencyError(ArtencError):
    """An optional package is needed for this feature but not installed."""

    exit_code = 2


def require(module: str, extra: str):
    """Import an optional module, or raise with the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"this feature needs the '{module}' package: pip install 'artenc[{extra}]'"
        ) from exc
