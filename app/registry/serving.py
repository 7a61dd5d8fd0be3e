"""Production models held in memory for /predict: loaded once, swapped atomically."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from app.registry.artifacts import LocalArtifactStore


@dataclass(frozen=True)
class LoadedModel:
    pipeline_id: int
    version: int
    sha256: str
    features: list[str]
    model: Any


class ModelCache:
    """One loaded model per pipeline, replaced as a whole when production changes."""

    def __init__(self, store: LocalArtifactStore) -> None:
        self._store = store
        self._models: dict[int, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(
        self, *, pipeline_id: int, version: int, sha256: str, uri: str, features: list[str]
    ) -> LoadedModel:
        """The loaded model for this production version, loading it on first use."""
        current = self._models.get(pipeline_id)
        if current is not None and current.version == version and current.sha256 == sha256:
            return current
        with self._lock:
            current = self._models.get(pipeline_id)
            if current is None or current.version != version or current.sha256 != sha256:
                model = self._store.load(uri, sha256)
                current = LoadedModel(pipeline_id, version, sha256, features, model)
                self._models[pipeline_id] = current
        return current

    def put(self, loaded: LoadedModel) -> None:
        """Install a model already in memory (the run that trained it just promoted it)."""
        with self._lock:
            self._models[loaded.pipeline_id] = loaded

    def evict(self, pipeline_id: int) -> None:
        """Forget a pipeline's model (deleted, or production cleared)."""
        with self._lock:
            self._models.pop(pipeline_id, None)
