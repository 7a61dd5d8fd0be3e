from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.time import utcnow


class DataBatch(Base):
    """Rows posted to a pipeline's new-data webhook; the `ingested` source reads them."""

    __tablename__ = "data_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    row_count: Mapped[int]
    columns: Mapped[list[Any]] = mapped_column(default=list)
    # The rows as one Parquet file (see datasources/stored.py); deferred, so loading a batch
    # never pulls its rows unless they are asked for.
    parquet: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
