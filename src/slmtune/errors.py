"""The project's own exception types, and how a failure is reported to the user.

Every error slmtune raises on purpose is a `SlmtuneError` whose message says what is wrong,
where (file:line, config key or folder) and what to do. Commands print that one message
and exit 1; the full traceback is printed only in debug mode (`--debug` or
`SLMTUNE_DEBUG=1`). Any other exception is a bug or an unforeseen case: it is reported in
one line too, with a pointer to debug mode.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
DEBUG_ENV = "SLMTUNE_DEBUG"
DEBUG_HINT = f"rerun with --debug or {DEBUG_ENV}=1 for the traceback"


class SlmtuneError(Exception):
    """Base class for every error slmtune raises on purpose."""


class ConfigError(SlmtuneError):
    """A configuration key is unknown, missing or of the wrong type."""


class DataError(SlmtuneError):
    """Input data is malformed; the message names the file and line."""


class HardwareError(SlmtuneError):
    """The machine does not match the chosen hardware profile."""


class ModelError(SlmtuneError):
    """A model folder is missing, incomplete or of an unexpected kind."""


class VerificationError(SlmtuneError):
    """A stage's self-check failed (for example merged logits differ from base+adapter)."""


class RemoteCodeWarning(UserWarning):
    """A model config allowed code from a model folder to run (`model.trust_remote_code=true`)."""


def debug_enabled() -> bool:
    """True when the user asked for tracebacks (`--debug` or SLMTUNE_DEBUG set to a true value)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


class _DebugFlag(argparse.Action):
    """`--debug`: turn debug mode on for this process and the processes it starts."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option=None):
        setattr(namespace, self.dest, True)
        os.environ[DEBUG_ENV] = "1"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add `--debug` (print full tracebacks) to a command's parser."""
    parser.add_argument(
        "--debug", action=_DebugFlag, default=False, help=f"print full tracebacks (same as {DEBUG_ENV}=1)"
    )


def failure_lines(err: BaseException) -> list[str]:
    """What to print for a failure: the message of our own errors, a short summary of any other."""
    if isinstance(err, SlmtuneError):
        return [str(err)]
    summary = f"unexpected error: {type(err).__name__}: {err}".rstrip(": ")
    return [summary] if debug_enabled() else [summary, DEBUG_HINT]


def print_traceback_if_debug(err: BaseException) -> None:
    """The full traceback, on stderr, in debug mode only."""
    if debug_enabled():
        traceback.print_exception(err, file=sys.stderr)


def exit_on_failure(body: Callable[[], T], first: str, prefix: str, closing: tuple[str, ...] = ()) -> T:
    """Run `body`; on any failure print its lines (`first` before the first, `prefix` before the rest,
    then `closing`) on stderr, the traceback too in debug mode, and exit 1."""
    try:
        return body()
    except Exception as err:
        sys.stdout.flush()
        print_traceback_if_debug(err)
        head, *rest = failure_lines(err)
        lines = [f"{first}{head}", *(f"{prefix}{line}" for line in [*rest, *closing])]
        print("\n".join(lines), file=sys.stderr, flush=True)
        sys.exit(1)
