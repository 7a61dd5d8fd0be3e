"""Column kinds, shared by preprocessing and the drift reference (pandas only, no sklearn)."""

from __future__ import annotations

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype


def numeric_columns(X: pd.DataFrame) -> list[str]:  # noqa: N803 (sklearn's X)
    """Columns with a numeric dtype; booleans are categories, not numbers."""
    return [
        str(column)
        for column, dtype in X.dtypes.items()
        if is_numeric_dtype(dtype) and not is_bool_dtype(dtype)
    ]
