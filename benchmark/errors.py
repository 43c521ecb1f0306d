"""Errors a user can fix. The CLI prints their message as one paragraph and exits non-zero.

An error raised while running someone else's code (a method file, a plugin, a method's fit or
predict) keeps the original exception as its cause: `--debug` (or OODBENCH_DEBUG=1) prints the
full traceback; without it the user sees one paragraph that says where it failed and how to see more.
"""

from __future__ import annotations

import os

DEBUG_ENV = "OODBENCH_DEBUG"
DEBUG_HINT = "Run again with --debug (or OODBENCH_DEBUG=1) for the full traceback."


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class OodbenchError(Exception):
    """A problem with the user's input or environment; the message names it and the fix."""


class UnknownNameError(OodbenchError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(OodbenchError):
    """Missing, corrupted or mismatching data."""


class UserCodeError(OodbenchError):
    """Code that is not oodbench's (a method file, a plugin, a method's fit/predict) raised; the cause is kept."""


def user_code_error(where: str, err: BaseException) -> UserCodeError:
    """One paragraph for an exception raised in user code; raise it `from err` to keep the traceback."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return UserCodeError(f"{where} failed: {type(err).__name__}{': ' + first if first else ''}. {DEBUG_HINT}")
