"""Reading a user's CSV files (plain or gzip-compressed): their header, columns, float targets and label names,
with a :class:`DataError` that names the file, the row or column, and the fix, for anything that cannot be used.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO


class DataError(ValueError):
    """A data file that cannot be used as given."""


def open_text(path: str | Path) -> TextIO:
    """A CSV file for reading as text, gzip-compressed (``.gz``) or not."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_columns(path: str | Path, columns: Sequence[str]) -> list[list[str]]:
    """Each of ``columns`` as a list of strings (the last one stripped: the label); names the missing column and
    the columns present."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with _readable(path), open_text(path) as f:
        reader = csv.DictReader(f)
        present = reader.fieldnames or []
        for column in columns:
            if column not in present:
                raise DataError(f"{path}: no column '{column}' (columns: {present})")
        values: list[list[str]] = [[] for _ in columns]
        for row in reader:
            for out, column in zip(values, columns, strict=True):
                out.append(row[column] or "")
    if not values[0]:
        raise DataError(f"{path}: no rows")
    values[-1] = [x.strip() for x in values[-1]]
    return values


def read_csv(path: str | Path, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[str]]:
    """Returns (texts, raw labels as strings); names the missing column and the columns present."""
    texts, labels = read_columns(path, [text_column, label_column])
    return texts, labels


def float_targets(raw: Sequence[str], path: str | Path, column: str) -> list[float]:
    """A regression target column as floats; a value that is not a finite number is named with its row (the header
    is row 1).

    >>> float_targets(["1.5", "2"], "t.csv", "score")
    [1.5, 2.0]
    >>> try:
    ...     float_targets(["1.5", "n/a"], "t.csv", "score")
    ... except DataError as err:
    ...     print(str(err).split(";")[0])
    t.csv row 3: score 'n/a' is not a number
    """
    targets = []
    for row, text in enumerate(raw, start=2):
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{path} row {row}: {column} {text!r} is not a number; a regression target must be one "
                            "(fix or drop the row)") from None
        if not math.isfinite(value):
            raise DataError(f"{path} row {row}: {column} is {text!r}; targets must be finite (fill or drop the row)")
        targets.append(value)
    return targets


def label_names_for(raw_labels: Sequence[str]) -> tuple[str, ...]:
    """Sorted distinct labels: numerically when every label is an integer, else lexically."""
    distinct = set(raw_labels)
    if all(_is_int(x) for x in distinct):
        return tuple(sorted(distinct, key=int))
    return tuple(sorted(distinct))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_header(path: str | Path) -> list[str]:
    """The column names of a CSV file, checked to have a first row (for checks that must not read it all)."""
    with _readable(path), open_text(path) as f:
        reader = csv.reader(f)
        header, first = next(reader, None), next(reader, None)
    if not header:
        raise DataError(f"{path}: empty file; it needs a header row (e.g. text,label) and data rows")
    if first is None:
        raise DataError(f"{path}: a header and no rows; add data rows")
    return header


@contextlib.contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turns what a file that is not UTF-8 CSV text raises into a DataError that says so."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at offset "
                        f"{err.start}); save it as UTF-8") from None
    except (csv.Error, gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"{path}: not a CSV text file ({err}); give a comma-separated text file "
                        "(gzip-compressed as .gz if you like)") from None
