"""Errors a user can fix. The CLI prints their message as one paragraph and exits non-zero."""

from __future__ import annotations


class OodbenchError(Exception):
    """A problem with the user's input or environment; the message names it and the fix."""


class UnknownNameError(OodbenchError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(OodbenchError):
    """Missing, corrupted or mismatching data."""
