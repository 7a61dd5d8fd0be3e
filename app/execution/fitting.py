"""What a training process does for a run: split its rows, fit the candidate, score it, write
its artifact.

All of it stays out of the service's process: a fit takes seconds, and predicting and
serialising a forest tens to hundreds of milliseconds more, nearly all of it holding an
interpreter lock that the control plane would otherwise wait for. The split comes here too,
while the service validates the same rows: in the service it waited for the checks and the
step's bookkeeping to give it the lock, and the fit waited for it.

One call (split) hashes and splits the run's rows, keeps the training side and sends back the
rest; the next (fit) returns as soon as the candidate is scored on the holdout; its artifact is
written meanwhile by another thread of the child, and a third call (stored) waits for it.
The model itself never crosses back on the run's way: the score and the holdout predictions
the gate needs do, and the model follows only for serving, after the run has ended (take_model).
A child holds one candidate at a time (app.execution.processes.reserved).
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from app.registry.artifacts import ArtifactStore, StoredArtifact
from app.spec.estimators import EstimatorKind
from app.spec.schema import PipelineSpec
from app.training.errors import EvaluationError, TrainingError
from app.training.evaluation import PredictedOnce, Recorded, score
from app.training.fingerprint import row_hashes
from app.training.holdout import Holdout, Split, split_holdout
from app.training.trainer import TrainedModel, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One candidate to fit: the spec, the limits, and where its artifact goes."""

    spec: PipelineSpec
    kind: EstimatorKind
    allowed_prefixes: Sequence[str]
    memory_mb: int | None
    store: ArtifactStore
    pipeline: str  # the artifact's directory
    version: int


@dataclass(frozen=True)
class Candidate:
    """What the service learns of a fitted candidate, without the model itself."""

    params: dict[str, Any]
    fit_seconds: float
    # The candidate's metric on the holdout, or why it cannot be computed (the evaluate step
    # raises it: a metric that does not fit the model is an evaluation failure, not a fit's).
    score: float | EvaluationError
    predictions: Recorded  # what the chance level is computed from


@dataclass(frozen=True)
class _Held:
    model: Pipeline
    artifact: Future[StoredArtifact]


# The child's candidate, from fit until take_model or forget (one call at a time per child).
_held: list[_Held] = []
# The run's rows, from split until fit.
_rows: list[Holdout] = []
# Threads start on the first submit, in a training process: the forkserver, which imports
# this module, stays single-threaded.
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-artifact")


def split(frame: pd.DataFrame, spec: PipelineSpec, kind: EstimatorKind) -> Split:
    """Split the run's rows by hash and keep them for fit; what the service needs of them."""
    forget()  # what a stopped run left behind is not kept for long
    hashes = row_hashes(frame)
    rows = split_holdout(frame, spec, kind, hashes)
    _rows.append(rows)
    return rows.seen_from_outside(hashes)


def fit(task: Task) -> Candidate:
    """Fit on the rows split last, start writing the artifact, score on the holdout."""
    if not _rows:
        raise RuntimeError("this training process holds no split rows to fit on")
    rows = _rows.pop()
    X_test, y_test = rows.X_test, rows.y_test  # noqa: N806 (sklearn's X)
    trained = _fit_capped(task, rows.X_train, rows.y_train)
    del rows  # the training rows are freed while the candidate is scored
    model = trained.model
    written = _writer.submit(task.store.save, task.pipeline, task.version, model)
    _held.append(_Held(model, written))
    predicted = PredictedOnce(model, X_test)
    try:
        value: float | EvaluationError = score(
            predicted, X_test, y_test, task.spec.evaluation.metric, task.kind
        )
    except EvaluationError as exc:
        value = exc
    return Candidate(trained.params, trained.fit_seconds, value, predicted.recorded())


def stored() -> StoredArtifact:
    """The artifact of the candidate fitted last, once it is written."""
    return _candidate().artifact.result()


def take_model() -> Pipeline:
    """The candidate fitted last (for serving); the child holds it no longer."""
    held = _candidate()
    wait([held.artifact])
    _held.clear()
    return held.model


def forget() -> None:
    """Drop the split rows and the candidate, once its artifact is no longer being written."""
    _rows.clear()
    wait([held.artifact for held in _held])
    _held.clear()


def _candidate() -> _Held:
    if not _held:
        raise RuntimeError("this training process holds no fitted candidate")
    return _held[-1]


def _fit_capped(
    task: Task,
    X: pd.DataFrame,  # noqa: N803
    y: pd.Series,
) -> TrainedModel:
    """train() within the memory cap, with a failure that names the cap when it was hit.

    `task.memory_mb` caps what the fit may map beyond what the process has mapped already."""
    try:
        with memory_cap(task.memory_mb):
            return train(task.spec, X, y, task.allowed_prefixes)
    except TrainingError as exc:
        if isinstance(exc.__cause__, MemoryError) and task.memory_mb is not None:
            raise TrainingError(
                f"Training failed: the fit needs more memory than MLOPS_TRAINING_MEMORY_MB "
                f"allows ({task.memory_mb} MB): {exc.__cause__}"
            ) from exc.__cause__
        raise


@contextmanager
def memory_cap(megabytes: int | None) -> Iterator[None]:
    """Within the block, an allocation that would take the process's address space more than
    `megabytes` over its size at entry fails with MemoryError; the limit is lifted after.

    A runaway fit then fails its run with a readable error, before the kernel's OOM killer
    picks a victim on the host (which need not be the fit)."""
    if megabytes is None or sys.platform != "linux":
        if megabytes is not None:
            log.warning("MLOPS_TRAINING_MEMORY_MB is ignored: it needs Linux")
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + megabytes * 2**20
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    """This process's mapped address space in bytes (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")
