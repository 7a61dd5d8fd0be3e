"""What a training process does for a run: fit the candidate, then write its artifact.

Both stay out of the service's process: for a 40-tree random forest the fit takes seconds
and serialising it with skops another second and a half, all of it holding an interpreter
lock that the control plane would otherwise wait for.

They are two calls to the same child (app.execution.processes.reserved): the fitted model comes
back first, so that the service scores it on the holdout while the child writes the artifact.
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from app.registry.artifacts import ArtifactStore, StoredArtifact
from app.spec.schema import PipelineSpec
from app.training.errors import TrainingError
from app.training.trainer import TrainedModel, train

log = logging.getLogger(__name__)
# The child's last fitted model, until store_fitted writes it (one call at a time per child).
_fitted: list[Pipeline] = []


def fit(
    spec: PipelineSpec,
    X: pd.DataFrame,  # noqa: N803 (sklearn's X)
    y: pd.Series,
    allowed_prefixes: Sequence[str],
    memory_mb: int | None = None,
) -> TrainedModel:
    """The fitted candidate; the child keeps the model for store_fitted.

    `memory_mb` caps what the fit may map beyond what the process has mapped already."""
    _fitted.clear()  # a model a stopped run left behind is not kept for long
    try:
        with memory_cap(memory_mb):
            trained = train(spec, X, y, allowed_prefixes)
    except TrainingError as exc:
        if isinstance(exc.__cause__, MemoryError) and memory_mb is not None:
            raise TrainingError(
                f"Training failed: the fit needs more memory than MLOPS_TRAINING_MEMORY_MB "
                f"allows ({memory_mb} MB): {exc.__cause__}"
            ) from exc.__cause__
        raise
    _fitted.append(trained.model)
    return trained


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


def store_fitted(store: ArtifactStore, pipeline: str, version: int) -> StoredArtifact:
    """Write the model this child fitted last as `version` of `pipeline`."""
    if not _fitted:
        raise RuntimeError("this training process holds no fitted model to store")
    return store.save(pipeline, version, _fitted.pop())
