"""Cells of the CSV downloads that a spreadsheet would run as formulas are escaped.

A submitter controls strings such as the method name; a cell like `=HYPERLINK(...)` opened in a
spreadsheet runs as a formula (CSV injection). Following OWASP's advice, a text cell that begins with
`=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which spreadsheets show as
text. Numbers stay numbers: numeric columns are untouched, and a text cell that is just a number
(`-1.5`) cannot be a formula, so it is kept as it is.

The merged results are written with Arrow's CSV writer, every text column escaped in one vectorised pass
(250,000 rows in well under a second); `escape_formula` is the same rule for one value.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_STARTS = "^[=+\\-@\t\r]"
_NUMBER = f"^{PLAIN_NUMBER.pattern}$"


def escape_formula(value: object) -> object:
    """`value` with a leading `'` when it is text a spreadsheet would read as a formula; otherwise unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def escape_array(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A text column with every formula-like cell escaped (the rule of escape_formula), nulls kept."""
    risky = pc.and_(pc.match_substring_regex(values, _STARTS), pc.invert(pc.match_substring_regex(values, _NUMBER)))
    if not pc.any(risky).as_py():
        return values
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def escape_table(table: pa.Table) -> pa.Table:
    """A table whose text columns and column names are escaped for a CSV download; timestamps become ISO 8601
    text and NaN an empty cell, as a spreadsheet reads them."""
    columns, names = [], []
    for f, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_dictionary(f.type):
            column = column.cast(f.type.value_type)
        t = column.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            column = escape_array(column)
        elif pa.types.is_timestamp(t):
            text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%z" if t.tz else "%Y-%m-%dT%H:%M:%S")
            column = pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")  # +0000 -> +00:00
        elif pa.types.is_floating(t):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, t), column)
        columns.append(column)
        names.append(str(escape_formula(f.name)))
    return pa.table(columns, names=names)


def write_csv(table: pa.Table, path: Path) -> None:
    """Write `table` as a CSV download with every cell escaped (escape_table)."""
    pcsv.write_csv(escape_table(table), str(path), pcsv.WriteOptions(quoting_style="needed"))


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
