"""The training-data fingerprint recorded on every model version."""

from __future__ import annotations

import hashlib
import json
from typing import TypedDict

import pandas as pd


class DataFingerprint(TypedDict):
    rows: int
    columns: list[str]
    sha256: str


def fingerprint(frame: pd.DataFrame) -> DataFingerprint:
    """Rows, column names and a content hash that is equal for equal data."""
    columns = [str(column) for column in frame.columns]
    digest = hashlib.sha256()
    # Column names go into the hash too: renaming a column changes what a model was trained on.
    digest.update(json.dumps(columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return {"rows": len(frame), "columns": columns, "sha256": digest.hexdigest()}
