"""Safe models: a spec reaches allow-listed estimator classes only (it never makes the service
import a module or call anything), and a model file is refused, without running, unless every
type in it is trusted, even when its sha256 matches."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import sklearn
import skops.io
from sqlalchemy import create_engine, text

from app.core.settings import Settings
from app.registry.artifacts import LocalArtifactStore
from tests.factories import pipeline_spec, wait_for_run

API = "/api/v1"
NAME = "safe-models"
BASE = f"{API}/pipelines/{NAME}"


# ---------------------------------------------------------------- estimators


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A module that leaves a marker file when imported, importable both as `<name>` and as
    `sklearn.<name>` (its directory is added to scikit-learn's package path)."""
    name = f"mlops_probe_{uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "class Evil(LogisticRegression):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sklearn, "__path__", [*sklearn.__path__, str(tmp_path)])
    yield name, marker
    for module in (name, f"sklearn.{name}"):
        sys.modules.pop(module, None)


NOT_IMPORTED = (
    "sklearn.conftest",
    "sklearn.experimental.enable_iterative_imputer",
    "sklearn.experimental.enable_halving_search_cv",
    "sklearn.utils._testing",
    "sklearn.utils.estimator_checks",
)


def hostile_models(probe: str) -> dict[str, dict[str, Any]]:
    """Specs' `model` sections that try to reach something other than an estimator class."""
    bagging = "sklearn.ensemble.BaggingClassifier"
    logistic = "sklearn.linear_model.LogisticRegression"
    return {
        "module outside the allow-list": {"estimator": f"{probe}.Evil"},
        "module under sklearn. that is no public submodule": {"estimator": f"sklearn.{probe}.Evil"},
        "sklearn's conftest": {"estimator": "sklearn.conftest.pytest_configure"},
        "an experimental enabler": {
            "estimator": "sklearn.experimental.enable_iterative_imputer.IterativeImputer"
        },
        "a private testing helper": {
            "estimator": "sklearn.utils._testing.assert_run_python_script_without_output"
        },
        "an estimator-checks module": {
            "estimator": "sklearn.utils.estimator_checks.check_estimator"
        },
        "vendored code": {"estimator": "sklearn.externals.array_api_compat.numpy"},
        "a function": {"estimator": "sklearn.datasets.fetch_openml"},
        "dunder subclasses": {"estimator": "sklearn.base.BaseEstimator.__subclasses__"},
        "dunder class": {"estimator": f"{logistic}.__class__"},
        "a method": {"estimator": f"{logistic}.fit"},
        "builtins import": {"estimator": "builtins.__import__"},
        "os.system": {"estimator": "os.system"},
        "trailing newline": {"estimator": f"{logistic}\n"},
        "no estimator": {"estimator": "sklearn.base.BaseEstimator"},
        "a meta-estimator without its inner one": {
            "estimator": "sklearn.semi_supervised.SelfTrainingClassifier"
        },
        "param naming a class": {"estimator": logistic, "params": {"C": f"{probe}.Evil"}},
        "param __class__": {"estimator": logistic, "params": {"__class__": f"{probe}.Evil"}},
        "param value {__class__}": {
            "estimator": logistic,
            "params": {"C": {"__class__": f"sklearn.{probe}.Evil"}},
        },
        "nested estimator as a path": {
            "estimator": bagging,
            "params": {"estimator": f"sklearn.{probe}.Evil"},
        },
        "nested estimator as a mapping": {
            "estimator": bagging,
            "params": {"estimator": {"estimator": f"{probe}.Evil", "params": {}}},
        },
        "nested callable": {
            "estimator": "sklearn.neighbors.KNeighborsClassifier",
            "params": {"weights": f"{probe}.Evil", "metric": "os.system"},
        },
    }


def test_no_spec_can_make_the_service_import_or_call_anything(
    client: Any, probe: tuple[str, Path]
) -> None:
    name, marker = probe
    before = set(sys.modules)
    for label, model in hostile_models(name).items():
        spec = pipeline_spec(NAME, model=model, source={"kind": "sklearn", "dataset": "iris"})
        response = client.post(f"{API}/pipelines", json=spec)
        assert response.status_code == 422, (label, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        [error] = response.json()["errors"]
        assert error["loc"] in ("model.estimator", "model.params"), (label, error)
        assert response.json()["detail"].startswith(error["loc"] + ": ")
    imported = {m for m in set(sys.modules) - before if name in m or m in NOT_IMPORTED}
    assert imported == set()
    assert not marker.exists()
    assert client.get(f"{API}/pipelines").json()["total"] == 0


def test_the_probe_would_have_been_importable(probe: tuple[str, Path]) -> None:
    # The control: the probe is a real module under sklearn's path, so the refusals above
    # are the resolver's doing, not an import that could never have worked.
    import importlib

    name, marker = probe
    module = importlib.import_module(f"sklearn.{name}")
    assert issubclass(module.Evil, sklearn.base.BaseEstimator)
    assert marker.exists()


# ---------------------------------------------------------------- planted artifacts


def _skops_call(module: str, function: str, *args: Any) -> bytes:
    """A skops file whose only node calls module.function(*args) when it is loaded."""
    content = [
        {
            "__class__": "str",
            "__module__": "builtins",
            "__loader__": "JsonNode",
            "content": json.dumps(arg),
            "is_json": True,
            "__id__": i + 1,
        }
        for i, arg in enumerate(args)
    ]
    schema = {
        "__class__": function,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": content,
            "__id__": 100,
        },
        "__id__": 101,
        "protocol": 2,
        "_skops_version": skops.__version__,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


class _TouchMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def payloads(tmp_path: Path, marker: Path) -> dict[str, bytes]:
    """Model files that run code when loaded. The two under `sklearn.` and `numpy.` name
    types a prefix-based trust list (`sklearn.*`, `numpy.*`) would have let through."""
    evil_pickle = pickle.dumps(_TouchMarker(marker))
    (tmp_path / "evil.npy").write_bytes(evil_pickle)
    script = f"open({str(marker)!r}, 'w').close()"
    return {
        "pickle with __reduce__": evil_pickle,
        "skops calling a sklearn helper that runs a script": _skops_call(
            "sklearn.utils._testing", "assert_run_python_script_without_output", script
        ),
        "skops calling numpy.load on a pickle": _skops_call(
            "numpy", "load", str(tmp_path / "evil.npy"), None, True
        ),
        "skops calling os.system": _skops_call("os", "system", f"touch {marker}"),
    }


def load_naively(data: bytes) -> None:
    """What a loader that trusted the file would do."""
    if data.startswith(b"PK"):
        skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    else:
        pickle.loads(data)


@pytest.mark.parametrize(
    "payload",
    [
        "pickle with __reduce__",
        "skops calling a sklearn helper that runs a script",
        "skops calling numpy.load on a pickle",
        "skops calling os.system",
    ],
)
def test_planted_model_files_are_refused_without_running(
    client: Any, settings: Settings, tmp_path: Path, payload: str
) -> None:
    marker = tmp_path / "payload-ran"
    data = payloads(tmp_path, marker)[payload]
    # The control: the payload is live, a trusting loader runs it.
    load_naively(data)
    assert marker.exists()
    marker.unlink()

    awaiting = train_a_candidate(client)
    plant(settings, awaiting["model_version"], data)
    promoted = client.post(f"{BASE}/models/1/promote", json={"reason": "approve"})
    assert promoted.status_code == 200, promoted.text  # promotion moves a pointer only

    response = client.post(f"{BASE}/predict", json={"instances": [IRIS_ROW]})

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Artifact refused"
    assert (
        "refusing to load it" in problem["detail"] or "not a readable model" in (problem["detail"])
    )
    assert not marker.exists()


def test_a_refused_production_model_does_not_run_in_the_next_training_run(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    # Each run scores production on its holdout, loading it first: the same check applies.
    marker = tmp_path / "payload-ran"
    data = payloads(tmp_path, marker)["skops calling os.system"]
    train_a_candidate(client)
    plant(settings, 1, data)
    assert client.post(f"{BASE}/models/1/promote").status_code == 200

    run = wait_for_run(client, client.post(f"{BASE}/runs").json()["id"])

    # The gate fails closed: production that cannot be loaded is no evidence either way.
    assert run["status"] == "rejected"
    assert run["error"].startswith("Evaluation gate: production version 1 could not be scored")
    assert "holds untrusted types: os.system" in run["metrics"]["production_note"]
    assert not marker.exists()


def test_artifacts_the_service_trains_still_load(tmp_path: Path) -> None:
    # The trusted list is exact names; models with their own internal types still load.
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_iris(return_X_y=True, as_frame=True)  # noqa: N806
    store = LocalArtifactStore(tmp_path / "artifacts")
    for version, model in enumerate(
        [
            RandomForestClassifier(n_estimators=3),
            HistGradientBoostingClassifier(max_iter=3),
            KNeighborsClassifier(metric="manhattan"),
        ],
        start=1,
    ):
        stored = store.save("p", version, model.fit(X, y))
        assert store.load(stored.uri, stored.sha256).predict(X[:2]).shape == (2,)


IRIS_ROW = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


def train_a_candidate(client: Any) -> dict[str, Any]:
    """A manual pipeline on iris whose first run ends awaiting approval with version 1."""
    spec = pipeline_spec(
        NAME,
        source={"kind": "sklearn", "dataset": "iris"},
        target="target",
        validation={"min_rows": 10},
        deployment={"mode": "manual"},
    )
    assert client.post(f"{API}/pipelines", json=spec).status_code == 201
    run = wait_for_run(client, client.post(f"{BASE}/runs").json()["id"])
    assert run["status"] == "awaiting_approval", run
    return run


def plant(settings: Settings, version: int, data: bytes) -> None:
    """Replace the version's file with `data` and record its sha256, as an attacker with
    write access to both the artifact store and the database would."""
    import hashlib

    [path] = settings.resolved_artifact_dir.glob(f"{NAME}@*/v{version}.skops")
    path.write_bytes(data)
    engine = create_engine(str(settings.database_url))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE model_versions SET sha256 = :sha WHERE version = :version"),
            {"sha": hashlib.sha256(data).hexdigest(), "version": version},
        )
    engine.dispose()
