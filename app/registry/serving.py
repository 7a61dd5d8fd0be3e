"""Production models held in memory for /predict: loaded once, swapped atomically."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.registry.artifacts import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """What it takes to load one version: where it is and what it must hash to."""

    pipeline_id: int
    version: int
    sha256: str
    uri: str
    features: list[str]


@dataclass(frozen=True)
class LoadedModel:
    pipeline_id: int
    version: int
    sha256: str
    features: list[str]
    model: Any


class ModelCache:
    """One loaded model per pipeline, replaced as a whole when production changes."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._models: dict[int, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded model for this production version, loading it on first use."""
        current = self._models.get(ref.pipeline_id)
        if current is not None and (current.version, current.sha256) == (ref.version, ref.sha256):
            return current
        with self._lock:
            current = self._models.get(ref.pipeline_id)
            if current is None or (current.version, current.sha256) != (ref.version, ref.sha256):
                model = self._store.load(ref.uri, ref.sha256)
                current = LoadedModel(ref.pipeline_id, ref.version, ref.sha256, ref.features, model)
                self._models[ref.pipeline_id] = current
        return current

    def preload(self, refs: Iterable[ModelRef], budget_s: float) -> int:
        """Load these models in turn until `budget_s` has passed; how many were loaded. One
        that does not load is logged and left to its first use, which reports it."""
        deadline, loaded = time.monotonic() + budget_s, 0
        for ref in refs:
            if time.monotonic() >= deadline:
                break
            try:
                self.get(ref)
            except Exception as exc:
                log.warning(
                    "production v%s of pipeline %s did not preload: %s",
                    ref.version,
                    ref.pipeline_id,
                    exc,
                )
                continue
            loaded += 1
        return loaded

    def put(self, loaded: LoadedModel) -> None:
        """Install a model already in memory (the run that trained it just promoted it)."""
        with self._lock:
            self._models[loaded.pipeline_id] = loaded

    def evict(self, pipeline_id: int) -> None:
        """Forget a pipeline's model (deleted, or production cleared)."""
        with self._lock:
            self._models.pop(pipeline_id, None)
