"""What a training process does for a run: fit the candidate, then write its artifact.

Both stay out of the service's process: for a 40-tree random forest the fit takes seconds
and serialising it with skops another second and a half, all of it holding an interpreter
lock that the control plane would otherwise wait for.

They are two calls to the same child (app.runs.processes.reserved): the fitted model comes
back first, so that the service scores it on the holdout while the child writes the artifact.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sklearn.pipeline import Pipeline

from app.pipelines.spec import PipelineSpec
from app.registry.artifacts import LocalArtifactStore, StoredArtifact
from app.training.trainer import TrainedModel, train

# The child's last fitted model, until store_fitted writes it (one call at a time per child).
_fitted: list[Pipeline] = []


def fit(
    spec: PipelineSpec,
    X: pd.DataFrame,  # noqa: N803 (sklearn's X)
    y: pd.Series,
    allowed_prefixes: Sequence[str],
) -> TrainedModel:
    """The fitted candidate; the child keeps the model for store_fitted."""
    _fitted.clear()  # a model a stopped run left behind is not kept for long
    trained = train(spec, X, y, allowed_prefixes)
    _fitted.append(trained.model)
    return trained


def store_fitted(store: LocalArtifactStore, pipeline: str, version: int) -> StoredArtifact:
    """Write the model this child fitted last as `version` of `pipeline`."""
    if not _fitted:
        raise RuntimeError("this training process holds no fitted model to store")
    return store.save(pipeline, version, _fitted.pop())
