"""One error policy for the command lines (``python -m unetseg``, ``python -m Training``).

- success: the command's own code (0);
- any failure: one line ``<prog>: error: <message>`` on stderr and exit code 2 (``--debug``
  prints the traceback first);
- SIGINT (Ctrl-C) or SIGTERM: the command stops at the next Python instruction (within a
  second or two even during inference), outputs are left as they were (every write is
  atomic), one line on stderr and exit code 130.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
#: Failures whose message is meant for the user as it is; others also name their type.
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def debug_option() -> argparse.ArgumentParser:
    """Parent parser adding ``--debug`` (show tracebacks) to a subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (for bug reports)"
    )
    return parent


def run_command(prog: str, command: Callable[[], int], debug: bool = False) -> int:
    """Run ``command`` under the policy above; returns the exit code."""
    try:
        with _stop_signals():
            return command()
    except KeyboardInterrupt as interruption:
        reason = str(interruption) or "SIGINT"
        print(f"{prog}: interrupted ({reason}); outputs left as they were", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {describe_error(error, debug)}", file=sys.stderr)
        return EXIT_ERROR


def describe_error(error: BaseException, debug: bool = False) -> str:
    """``error`` as one line: its message, with its type for unexpected kinds of error."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, MemoryError):
        return f"out of memory{': ' + message if message else ''} (nothing was written)"
    if isinstance(error, EXPECTED_ERRORS) and message:
        return message
    hint = "" if debug else "; rerun with --debug for the traceback"
    return f"unexpected {type(error).__name__}: {message or repr(error)}{hint}"


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` (also where a parent shell made the
    process ignore SIGINT, as for background jobs); the previous handlers come back after."""
    with stop_signal_handler(_interrupt):
        yield


@contextlib.contextmanager
def stop_signal_handler(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler(signum, frame)`` for SIGINT and SIGTERM inside the block (main thread only:
    elsewhere signals cannot be handled and the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
