"""What a training process does for a run: fit the candidate, then write its artifact.

Both stay out of the service's process: for a 40-tree random forest the fit takes seconds
and serialising it with skops another second and a half, all of it holding an interpreter
lock that the control plane would otherwise wait for.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from app.pipelines.spec import PipelineSpec
from app.registry.artifacts import LocalArtifactStore, StoredArtifact
from app.training.trainer import TrainedModel, train


def fit_and_store(
    spec: PipelineSpec,
    X: pd.DataFrame,  # noqa: N803 (sklearn's X)
    y: pd.Series,
    allowed_prefixes: Sequence[str],
    store: LocalArtifactStore,
    pipeline: str,
    version: int,
) -> tuple[TrainedModel, StoredArtifact]:
    """The fitted candidate and its artifact, written as `version` of `pipeline`."""
    trained = train(spec, X, y, allowed_prefixes)
    return trained, store.save(pipeline, version, trained.model)
