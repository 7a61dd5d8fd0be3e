"""Artifact stores: model files in a local directory, the database or S3, verified on load.

Artifacts are skops files, so their contents can be checked before anything is instantiated.
skops trusts its own vetted list (scikit-learn estimators, numpy and scipy basics); beyond it,
only the exact names in TRUSTED_TYPES load. Never a prefix: under `sklearn.` or `numpy.` there
are callables (numpy.load, numpy.memmap, sklearn.utils._testing helpers that run a script)
that a crafted file would have skops call with arguments of its choosing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from app.core.errors import ArtifactError

# fmt: off
_DISTANCES = (
    "BrayCurtis", "Canberra", "Chebyshev", "Dice", "Euclidean", "Hamming", "Haversine",
    "Jaccard", "Kulsinski", "Mahalanobis", "Manhattan", "Matching", "Minkowski",
    "RogersTanimoto", "RussellRao", "SEuclidean", "SokalMichener", "SokalSneath",
)
# fmt: on
# What fitted allow-listed estimators hold beyond skops' defaults, found by saving every
# scikit-learn classifier and regressor that trains with default params. Classes only: a
# trusted name is something skops may instantiate, so no function but our own is here.
TRUSTED_TYPES = frozenset(
    {
        # Our preprocessing function, referenced by name by every fitted pipeline.
        "app.training.preprocessing.as_categories",
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        # skops leaves it out because a crafted node array could crash inference; ours are
        # our own files, verified by sha256 before this check.
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        *(f"sklearn.metrics._dist_metrics.{name}Distance64" for name in _DISTANCES),
    }
)


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Where model files live: a local directory, the SQL database, or an S3 bucket."""

    def save(self, pipeline: str, version: int, model: Any) -> StoredArtifact:
        """Serialise `model` and store it as `version` of `pipeline`."""

    def read_verified(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, refused unless they hash to `sha256`."""

    def load(self, uri: str, sha256: str) -> Any:
        """The model, verified by sha256 and by the types it would create."""

    def delete(self, uri: str) -> None:
        """Remove the artifact; one that is gone already is fine."""


class BlobArtifactStore(ABC):
    """Serialising, hashing and the checks on load; a store only moves bytes.

    Stores are pickled into training processes (which write the artifact), so they hold
    settings only and open their clients on first use."""

    @abstractmethod
    def write(self, uri: str, data: bytes) -> None:
        """Store `data` under `uri`, replacing what was there, atomically for readers."""

    @abstractmethod
    def read(self, uri: str) -> bytes:
        """The bytes under `uri`; ArtifactError when there are none."""

    def save(self, pipeline: str, version: int, model: Any) -> StoredArtifact:
        """Serialise and store; the sha256 is of the bytes stored."""
        uri = f"{pipeline}/v{version}.skops"
        sha256, size = self.write_model(uri, model)
        return StoredArtifact(uri=uri, sha256=sha256, size=size)

    def write_model(self, uri: str, model: Any) -> tuple[str, int]:
        """Store `model`'s skops file under `uri`; its sha256 and size."""
        data = skops_bytes(model)
        # Hashed while they are written: both release the interpreter lock on large buffers.
        with ThreadPoolExecutor(1, thread_name_prefix="mlops-sha256") as hashing:
            digest = hashing.submit(lambda: hashlib.sha256(data).hexdigest())
            self.write(uri, data)
            return digest.result(), len(data)

    def read_verified(self, uri: str, sha256: str) -> bytes:
        """The artifact's bytes, refused unless they hash to `sha256`."""
        data = self.read(uri)
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
            # Reads the file's schema only: nothing is imported or instantiated.
            untrusted = _skops().get_untrusted_types(data=data)
        except Exception as exc:
            raise ArtifactError(f"Artifact {uri} is not a readable model file: {exc}") from exc
        refused = sorted(name for name in untrusted if name not in TRUSTED_TYPES)
        if refused:
            raise ArtifactError(
                f"Artifact {uri} holds untrusted types: {', '.join(refused)}; refusing to load it"
            )
        try:
            return _skops().loads(data, trusted=untrusted)
        except Exception as exc:
            raise ArtifactError(f"Artifact {uri} could not be loaded: {exc}") from exc

    def delete(self, uri: str) -> None:
        """Remove the artifact; one that is gone already is fine."""
        self.remove(uri)

    @abstractmethod
    def remove(self, uri: str) -> None:
        """Remove the bytes under `uri`, if any."""


def missing(uri: str) -> ArtifactError:
    """The error for an artifact the store does not hold."""
    return ArtifactError(f"Artifact {uri} is missing from the artifact store")


class LocalArtifactStore(BlobArtifactStore):
    """Artifacts under one root directory; `uri` is the path relative to the root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, uri: str, data: bytes) -> None:
        """Write to a temporary file, then rename it over the target."""
        self._replace(uri, lambda handle: handle.write(data))

    def write_model(self, uri: str, model: Any) -> tuple[str, int]:
        """The skops file written straight into its file: no copy of it in memory (for a
        forest, growing and copying that buffer costs as much as the writing)."""
        written = self._replace(uri, lambda handle: write_skops(model, handle), _file_sha256)
        assert written.digest is not None
        return written.digest, written.path.stat().st_size

    def _replace(
        self,
        uri: str,
        fill: Callable[[BinaryIO], object],
        digest: Callable[[str], str] | None = None,
    ) -> _Written:
        """Fill a temporary file, make it durable, then rename it over the target; `digest`
        reads the filled file (from the page cache) in another thread while it is made durable:
        both release the interpreter lock, so they take two cores, not one after the other."""
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                if digest is None:
                    os.fsync(handle.fileno())
                    value = None
                else:
                    with ThreadPoolExecutor(1, thread_name_prefix="mlops-sha256") as reading:
                        digested = reading.submit(digest, tmp)
                        os.fsync(handle.fileno())
                        value = digested.result()
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        Path(tmp).replace(target)
        return _Written(target, value)

    def read(self, uri: str) -> bytes:
        """The file's bytes."""
        try:
            return self.path(uri).read_bytes()
        except FileNotFoundError as exc:
            raise missing(uri) from exc

    def remove(self, uri: str) -> None:
        """Remove the file, and its directory once empty."""
        path = self.path(uri)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: other versions are still there
            path.parent.rmdir()

    def path(self, uri: str) -> Path:
        """The file for `uri`, which must stay inside the root."""
        path = (self.root / uri).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ArtifactError(f"Artifact path {uri} escapes the artifact store")
        return path


@dataclass(frozen=True)
class _Written:
    path: Path
    digest: str | None


def _file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def skops_bytes(model: Any) -> bytes:
    """`model` as a skops file (write_skops), in memory."""
    buffer = io.BytesIO()
    write_skops(model, buffer)
    return buffer.getvalue()


def write_skops(model: Any, file: BinaryIO) -> None:
    """Write `model` to `file` as skops.io.dumps would, but with a compact schema.

    skops indents the schema's JSON, which sends it through Python's pure-Python encoder:
    for a forest, with a schema entry per array of every tree, that is most of the time the
    file takes to make (30 of 40 ms for 20 trees). The file is the same otherwise, and skops
    reads either alike (tests/test_artifact_stores.py compares the two)."""
    import skops
    from skops.io._utils import SaveContext, get_state  # the two steps of skops.io.dumps

    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as zip_file:
        context = SaveContext(zip_file=zip_file)
        state = get_state(model, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state, separators=(",", ":")))


def _skops() -> Any:
    # Imported on first use: skops.io imports every scikit-learn estimator when it loads
    # (~100 MB and seconds of start-up), which a scheduler that is only waiting needs not pay.
    import skops.io

    return skops.io
