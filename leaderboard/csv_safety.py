"""Cells of the CSV downloads that a spreadsheet would run as formulas are escaped.

A submitter controls strings such as the method name; a cell like `=HYPERLINK(...)` opened in a
spreadsheet runs as a formula (CSV injection). Following OWASP's advice, a text cell that begins with
`=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which spreadsheets show as
text. Numbers stay numbers: numeric columns are untouched, and a text cell that is just a number
(`-1.5`) cannot be a formula, so it is kept as it is.
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def escape_formula(value: object) -> object:
    """`value` with a leading `'` when it is text a spreadsheet would read as a formula; otherwise unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells and column names are escaped for a CSV download."""
    out = frame.copy()
    for col in out.columns:
        if not (
            pd.api.types.is_numeric_dtype(out[col])
            or pd.api.types.is_bool_dtype(out[col])
            or pd.api.types.is_datetime64_any_dtype(out[col])
        ):
            out[col] = out[col].map(escape_formula)
    return out.rename(columns=escape_formula)
