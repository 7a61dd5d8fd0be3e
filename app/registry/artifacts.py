"""The artifact store: model files on local disk, written atomically, verified before loading.

Artifacts are skops files, so their contents can be checked before anything is instantiated;
only types under the trusted prefixes are ever loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import ArtifactError

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")
# Our own preprocessing functions that fitted pipelines reference by name.
TRUSTED_NAMES = frozenset({"app.training.preprocessing.as_categories"})


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size: int


class LocalArtifactStore:
    """Artifacts under one root directory; `uri` is the path relative to the root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, pipeline: str, version: int, model: Any) -> StoredArtifact:
        """Serialise and write atomically; the sha256 is of the bytes on disk."""
        data = _skops().dumps(model)
        uri = f"{pipeline}/v{version}.skops"
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(target)
        return StoredArtifact(uri=uri, sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    def read_verified(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, refused unless they hash to `sha256`."""
        try:
            data = self.path(uri).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"Artifact {uri} is missing from the artifact store") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactError(
                f"Artifact {uri} failed its sha256 check (expected {sha256}, found {actual}); "
                "refusing to load it"
            )
        return data

    def load(self, uri: str, sha256: str) -> Any:
        """Verify, check every type it would create, then load."""
        data = self.read_verified(uri, sha256)
        try:
            untrusted = _skops().get_untrusted_types(data=data)
        except Exception as exc:
            raise ArtifactError(f"Artifact {uri} is not a readable model file: {exc}") from exc
        refused = [name for name in untrusted if not _trusted(name)]
        if refused:
            raise ArtifactError(f"Artifact {uri} holds untrusted types: {', '.join(refused)}")
        return _skops().loads(data, trusted=untrusted)

    def path(self, uri: str) -> Path:
        """The file for `uri`, which must stay inside the root."""
        path = (self.root / uri).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ArtifactError(f"Artifact path {uri} escapes the artifact store")
        return path


def _trusted(type_name: str) -> bool:
    return type_name in TRUSTED_NAMES or type_name.startswith(TRUSTED_PREFIXES)


def _skops() -> Any:
    # Imported on first use: skops.io imports every scikit-learn estimator when it loads
    # (~100 MB and seconds of start-up), which a scheduler that is only waiting needs not pay.
    import skops.io

    return skops.io
