"""The training-data fingerprint recorded on every model version."""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypedDict

import numpy as np
import pandas as pd


class DataFingerprint(TypedDict):
    rows: int
    columns: list[str]
    sha256: str


RowHashes = np.ndarray[Any, np.dtype[np.uint64]]


def row_hashes(frame: pd.DataFrame) -> RowHashes:
    """A 64-bit hash of each row's values (not of its index label): equal rows, equal hashes.

    pandas hashes with a fixed key, so a row hashes the same in every run and on every host."""
    try:
        hashed = pd.util.hash_pandas_object(frame, index=False)
    except TypeError:
        # Cells pandas cannot hash (lists and dicts from JSON records or SQL json columns)
        # are hashed as the text that training sees them as.
        hashed = pd.util.hash_pandas_object(frame.apply(_as_text_if_object), index=False)
    return np.asarray(hashed.to_numpy(), dtype=np.uint64)


def _as_text_if_object(column: pd.Series) -> pd.Series:
    return column.astype(str) if column.dtype == object else column


def fingerprint(frame: pd.DataFrame, hashes: RowHashes | None = None) -> DataFingerprint:
    """Rows, column names and a content hash that is equal for equal data.

    `hashes`: the frame's row_hashes when the caller has them already."""
    columns = [str(column) for column in frame.columns]
    digest = hashlib.sha256()
    # Column names go into the hash too: renaming a column changes what a model was trained on.
    digest.update(json.dumps(columns).encode())
    digest.update((row_hashes(frame) if hashes is None else hashes).tobytes())
    return {"rows": len(frame), "columns": columns, "sha256": digest.hexdigest()}
