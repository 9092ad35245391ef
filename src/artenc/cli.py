"""The `artenc` console script: a thin dispatcher over `artenc.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import re
import sys

import artenc
import artenc.commands as commands_pkg
from artenc.commands._flags import FLAG_OF, flag_text, user_message  # noqa: F401 - FLAG_OF: the table's public home
from artenc.errors import ArtencError

log = logging.getLogger("artenc")

BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe


class _FlagNames(logging.Filter):
    """Log lines of the CLI name flags where the library's messages name parameters (`flag_text`):
    the reasons of the files `embed` skips, logged as it goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("artenc"):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format: the handler reports it, as without this filter
                return True
            text = flag_text(message)
            if text != message:
                record.msg, record.args = text, None
        return True


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 and the message on stderr (its default, kept explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


class _VersionAction(argparse.Action):
    """`--version`: print "artenc VERSION" on stdout and exit 0, as argparse's "version" action
    does, with the version looked up only then (`artenc.__version__` reads the package metadata)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"artenc {artenc.__version__}")
        parser.exit()


def command_names() -> list[str]:
    """The sub-commands: one module of `artenc.commands` each, named as the command."""
    return sorted(m.name for m in pkgutil.iter_modules(commands_pkg.__path__) if not m.name.startswith("_"))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser with every sub-command found in `artenc.commands`, or with `command`
    alone when it names one (`main` does so for the command it runs: no other command's
    module is imported, and `artenc info` pays for no other command's imports)."""
    parser = _Parser(prog="artenc", description="Fine-art images to vectors, and what to do with them.")
    parser.add_argument("--version", action=_VersionAction, help="show artenc's version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    names = command_names()
    for name in [command] if command in names else names:
        importlib.import_module(f"artenc.commands.{name}").register(sub)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The sub-command `argv` names: its first argument that is not an option (the options
    before a command, -h, -v and --version, take no value); None when there is none."""
    return next((a for a in argv if not a.startswith("-")), None)


def setup_logging(verbose: bool = False) -> None:
    """Human messages go to stderr so stdout stays machine-readable."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("PIL", "matplotlib", "urllib3", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _FlagNames) for f in handler.filters):
            handler.addFilter(_FlagNames())


# flags whose values may look like options: argparse takes "--shard -1/2" for two flags
# ("expected one argument"); joined as "--shard=-1/2" the value reaches the library's check
_DASH_VALUES = {"--shard": re.compile(r"-\d+/-?\d+")}


def join_dash_values(argv: list[str]) -> list[str]:
    """`argv` with "FLAG VALUE" written "FLAG=VALUE" where VALUE starts with "-" and has the
    form of FLAG's values (`_DASH_VALUES`), so that argparse does not take it for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        pattern = _DASH_VALUES.get(argv[i])
        if pattern and i + 1 < len(argv) and pattern.fullmatch(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = join_dash_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(command_of(argv))
    # a sub-command with `pass_through=True` (train: Hydra's command line) gets the arguments
    # it does not declare, in order, as `args.passed_on`; for the others they are an error
    args, passed_on = parser.parse_known_args(argv)
    pass_through = getattr(args, "pass_through", False)
    if passed_on and not pass_through:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    args.passed_on = passed_on
    if not pass_through:  # Hydra sets up its own logging
        setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader went away (`artenc ... | head`): quiet exit, as a SIGPIPE-killed program
        # would. Python's recipe (docs, "Note on SIGPIPE"): point stdout at devnull so the
        # flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    except ArtencError as exc:
        log.error("error: %s", user_message(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
