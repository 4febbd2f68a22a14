"""What every command shares: one ``error:`` line per user mistake, checked numbers and paths.

Every ``python -m genres_jax.X`` command (and ``train.py``) ends a user mistake the same way,
in one place, `run`:

- a `genres_jax.UserError` (bad flag, config value, input file, output path, a request larger
  than memory) prints ``error: <message>`` on one line and exits 2;
- argparse's own complaints (unknown flag, ``--scale abc``) are a `UserError` too, without the
  usage block (``--help`` prints it);
- Ctrl-C prints one line and exits 130; outputs are written atomically (`outputs`), so none is
  ever left half-written;
- an allocation that fails anyway, or a file-system error naming its path, still ends in one
  line (exit 2) rather than a traceback.

Numeric flags use the types below (`positive_int`, `positive_float`, ...), which refuse NaN,
infinities and out-of-range values at parse time, naming the flag.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable

from genres_jax import UserError

USER_ERROR = 2
INTERRUPTED = 130


def one_line(message: object) -> str:
    """``message`` with its lines joined, so an error is always exactly one line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes raise `UserError` (one line, via `run`) instead of usage + exit."""

    def error(self, message: str):  # noqa: D102 - argparse's hook.
        raise UserError(f"{message} (see {self.prog} --help)")


def _from_checkpoint_library(code) -> bool:
    return "/orbax/" in getattr(code, "co_filename", "")


def quiet_checkpoint_threads() -> None:
    """Drops what Orbax's background threads print about a save or read that failed.

    A full disk or a damaged checkpoint makes them report the failure dozens of times (absl
    ERROR logs with tracebacks, asyncio futures never retrieved, closed event loops). The
    trainer reports it once, as one line naming the path and the cause, so theirs are dropped;
    every other log and warning is kept.
    """
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("absl").addFilter(lambda record: "/orbax/" not in record.pathname)
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and "Event loop is closed" in str(error):
            return
        if _from_checkpoint_library(getattr(unraisable.object, "cr_code", None)):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def _is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)[:200]


def run(command: Callable[[], int | None]) -> int:
    """Runs a command's body and turns every user-facing failure into one line and an exit code."""
    try:
        return command() or 0
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); no output was left half-written", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `... | head`: the reader left; nothing to say.
        sys.stderr.close()
        return 0
    except OSError as e:
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror or one_line(e)}", file=sys.stderr)
        return USER_ERROR
    except Exception as e:
        if not _is_out_of_memory(e):
            raise
        print(
            f"error: out of memory ({one_line(e)[:300]}); ask for less at once "
            "(a smaller batch, tile or output)",
            file=sys.stderr,
        )
        return USER_ERROR


# ------------------------------------------------------------------------ Checked numbers.


def _number(kind: type, text: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{'an integer' if kind is int else 'a number'} is needed, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"a finite number is needed, got {text!r}")
    return value


def _bounded(kind: type, low: float, *, strict: bool, name: str) -> Callable[[str], float | int]:
    def parse(text: str):
        value = _number(kind, text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value

    parse.__name__ = name  # argparse names the type in its messages.
    return parse


positive_int = _bounded(int, 1, strict=False, name="positive integer")
nonnegative_int = _bounded(int, 0, strict=False, name="non-negative integer")
positive_float = _bounded(float, 0.0, strict=True, name="positive number")


def int_at_least(low: int) -> Callable[[str], int]:
    return _bounded(int, low, strict=False, name=f"integer >= {low}")


def path(text: str) -> str:
    """A path flag's value: any non-empty text (an empty one would mean "here" or "not given").

    ``-`` is refused rather than taken as a file of that name: by convention it means standard
    input or output, which no command reads or writes images or reports through.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    if text == "-":
        raise argparse.ArgumentTypeError(
            "'-' (standard input/output) is not supported; name a file"
        )
    return text


path.__name__ = "path"
