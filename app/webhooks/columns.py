"""Which columns a posted batch may and must have, from the pipeline spec and earlier batches.

With `features` in the spec, every row has the features and the target, and nothing else.
Without them any columns are allowed as long as every row has the target; but once a batch
is stored, later batches must have the same columns: the `ingested` source trains on all
batches together, and a column only some batches have would be mostly nulls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from app.core.errors import field_error
from app.spec.schema import PipelineSpec
from app.webhooks.bodies import RawBatch, invalid
from app.webhooks.values import MAX_ERRORS

Error = dict[str, str]
SAME_AS_EARLIER = "earlier batches do not have it (without features, batches keep one set)"


@dataclass(frozen=True)
class ColumnRules:
    every_row: tuple[str, ...]
    # Columns the batch as a whole must have (JSON rows may leave them out: nulls).
    batch: tuple[str, ...]
    # None: any column is allowed.
    allowed: frozenset[str] | None
    why_unknown: str


def rules_for(spec: PipelineSpec, earlier: list[str] | None) -> ColumnRules:
    """The rules for the next batch; `earlier` is the columns of the newest stored batch."""
    if spec.features is not None:
        required = (*spec.features, spec.target)
        return ColumnRules(required, (), frozenset(required), "not a feature or the target")
    if earlier is None:
        return ColumnRules((spec.target,), (), None, "")
    others = tuple(c for c in earlier if c != spec.target)
    allowed = frozenset((spec.target, *others))
    return ColumnRules((spec.target,), others, allowed, SAME_AS_EARLIER)


def check(batch: RawBatch, rules: ColumnRules) -> None:
    """InvalidInput naming each missing or unknown column (per row for JSON records)."""
    found = _tabular_errors(batch, rules) if batch.tabular else _record_errors(batch, rules)
    errors: list[Error] = []
    for error in found:
        errors.append(error)
        if len(errors) == MAX_ERRORS:
            break
    if errors:
        raise invalid(errors)


def _tabular_errors(batch: RawBatch, rules: ColumnRules) -> Iterator[Error]:
    for column in (*rules.every_row, *rules.batch):
        if column not in batch.columns:
            yield field_error("body.columns", f"missing required column {column!r}")
    for column in batch.columns:
        if not _allowed(rules, column):
            yield field_error("body.columns", f"unknown column {column!r}: {rules.why_unknown}")


def _record_errors(batch: RawBatch, rules: ColumnRules) -> Iterator[Error]:
    assert batch.records is not None
    for column in rules.batch:
        if column not in batch.columns:
            yield field_error("body.columns", f"missing column {column!r}: earlier batches have it")
    # Rows mostly share a few sets of keys: each set is checked once, and rows are only
    # walked one by one to name the ones with a bad set.
    shapes = {shape: list(_shape_errors(shape, rules)) for shape in set(map(tuple, batch.records))}
    if not any(shapes.values()):
        return
    for i, row in enumerate(batch.records):
        for column, msg in shapes[tuple(row)]:
            yield field_error(f"body.records.{i}.{column}", msg)


def _shape_errors(keys: tuple[str, ...], rules: ColumnRules) -> Iterator[tuple[str, str]]:
    for column in rules.every_row:
        if column not in keys:
            yield column, "missing required column"
    for column in keys:
        if not _allowed(rules, column):
            yield column, f"unknown column: {rules.why_unknown}"


def _allowed(rules: ColumnRules, column: str) -> bool:
    return rules.allowed is None or column in rules.allowed
