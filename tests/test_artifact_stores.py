"""Artifact stores: a directory, the SQL database (SQLite and PostgreSQL) and S3 (a real
moto server over HTTP); every one refuses an artifact whose bytes changed."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from sqlalchemy import create_engine, update

from app.core import migrate, s3
from app.core.errors import ArtifactError, SourceError
from app.core.settings import Settings
from app.datasources.files import load_file
from app.execution import fitting
from app.execution.processes import Children
from app.registry.artifacts import BlobArtifactStore, LocalArtifactStore, skops_bytes
from app.registry.models import ArtifactChunk
from app.registry.stores import (
    CHUNK_BYTES,
    DatabaseArtifactStore,
    S3ArtifactStore,
    open_store,
)
from app.spec.schema import CsvSource, PipelineSpec
from tests.conftest import clean, create_pg_database, drop_pg_database
from tests.s3server import moto_server, set_aws_env

BUCKET = "mlops-test"
X, Y = load_iris(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    set_aws_env()
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        s3.client(url).create_bucket(Bucket=BUCKET)
        yield url


def corrupt_local(store: BlobArtifactStore, uri: str) -> None:
    assert isinstance(store, LocalArtifactStore)
    store.path(uri).write_bytes(store.path(uri).read_bytes()[:-1] + b"!")


def corrupt_db(store: BlobArtifactStore, uri: str) -> None:
    assert isinstance(store, DatabaseArtifactStore)
    engine = create_engine(store.url)
    with engine.begin() as connection:
        connection.execute(
            update(ArtifactChunk).where(ArtifactChunk.uri == uri).values(data=b"tampered")
        )
    engine.dispose()


def corrupt_s3(store: BlobArtifactStore, uri: str) -> None:
    assert isinstance(store, S3ArtifactStore)
    store.client.put_object(Bucket=store.bucket, Key=store.key(uri), Body=b"tampered")


Corrupt = Callable[[BlobArtifactStore, str], None]


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'mlops.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="module")
def postgresql_url() -> Iterator[str]:
    url = create_pg_database()
    migrate.upgrade(url)
    yield url
    drop_pg_database(url)


STORES = ["local", "db-sqlite", pytest.param("db-postgresql", marks=pytest.mark.postgres), "s3"]


@pytest.fixture(params=STORES)
def store_case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BlobArtifactStore, Corrupt]:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts"), corrupt_local
    if request.param.startswith("db-"):
        url: str = request.getfixturevalue(request.param.removeprefix("db-") + "_url")
        clean(url)
        return DatabaseArtifactStore(url), corrupt_db
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3ArtifactStore(BUCKET, f"run-{tmp_path.name}", endpoint), corrupt_s3


def test_a_saved_model_loads_back_and_predicts_the_same(
    store_case: tuple[BlobArtifactStore, Corrupt],
) -> None:
    store, _ = store_case
    model = DecisionTreeClassifier(random_state=0).fit(X, Y)
    stored = store.save("iris", 1, model)
    assert stored.uri == "iris/v1.skops" and len(stored.sha256) == 64
    assert (store.load(stored.uri, stored.sha256).predict(X) == model.predict(X)).all()


def test_a_changed_artifact_is_refused_by_its_hash(
    store_case: tuple[BlobArtifactStore, Corrupt],
) -> None:
    store, corrupt = store_case
    stored = store.save("iris", 1, DecisionTreeClassifier().fit(X, Y))
    corrupt(store, stored.uri)
    with pytest.raises(ArtifactError, match="failed its sha256 check"):
        store.load(stored.uri, stored.sha256)


def test_a_missing_artifact_says_so(store_case: tuple[BlobArtifactStore, Corrupt]) -> None:
    store, _ = store_case
    with pytest.raises(ArtifactError, match="missing from the artifact store"):
        store.read_verified("iris/v9.skops", "0" * 64)


def test_saving_again_replaces_the_artifact(
    store_case: tuple[BlobArtifactStore, Corrupt],
) -> None:
    store, _ = store_case
    store.save("iris", 1, DecisionTreeClassifier(max_depth=1).fit(X, Y))
    second = store.save("iris", 1, DecisionTreeClassifier(max_depth=3).fit(X, Y))
    assert store.load(second.uri, second.sha256).get_depth() == 3


def test_a_training_process_writes_to_the_store(
    store_case: tuple[BlobArtifactStore, Corrupt],
) -> None:
    # The store crosses into the child by pickle and opens its own client or connection there.
    store, _ = store_case
    spec = PipelineSpec.model_validate(
        {
            "name": "iris",
            "source": {"kind": "sklearn", "dataset": "iris"},
            "target": "target",
            "model": {"estimator": "sklearn.tree.DecisionTreeClassifier"},
        }
    )
    task = fitting.Task(spec, "classifier", ("sklearn.",), None, store, "iris", 2)
    children = Children()
    try:
        with children.reserved() as child:
            child.call(fitting.split, (load_iris(as_frame=True).frame, spec, "classifier"), None)
            child.call(fitting.fit, (task,), None)
            stored = child.call(fitting.stored, (), None)
            model = child.call(fitting.take_model, (), None)
    finally:
        children.close()
    assert (store.load(stored.uri, stored.sha256).predict(X) == model.predict(X)).all()


@pytest.mark.parametrize("size", [0, CHUNK_BYTES - 1, CHUNK_BYTES, 2 * CHUNK_BYTES + 7])
def test_the_database_store_streams_chunks_in_order(database_url: str, size: int) -> None:
    clean(database_url)
    store = DatabaseArtifactStore(database_url)
    data = bytes(i % 251 for i in range(size))
    store.write("p/v1.skops", data)
    assert store.read("p/v1.skops") == data


def test_the_setting_chooses_the_store(tmp_path: Path) -> None:
    def chosen(**values: str) -> BlobArtifactStore:
        return open_store(Settings(data_dir=tmp_path, **values))  # type: ignore[arg-type]

    assert isinstance(chosen(), LocalArtifactStore)
    assert isinstance(chosen(executor="celery"), DatabaseArtifactStore)
    assert isinstance(chosen(artifact_store="db"), DatabaseArtifactStore)
    local = chosen(artifact_store=f"file://{tmp_path}/models")
    assert isinstance(local, LocalArtifactStore) and local.root == tmp_path / "models"
    remote = chosen(artifact_store="s3://bucket/some/prefix", s3_endpoint_url="http://x")
    assert isinstance(remote, S3ArtifactStore)
    assert (remote.bucket, remote.key("p/v1.skops")) == ("bucket", "some/prefix/p/v1.skops")


@pytest.mark.parametrize("value", ["ftp://host/x", "s3://", "s3:///prefix"])
def test_a_store_setting_that_names_no_store_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="artifact_store"):
        Settings(artifact_store=value)


# --- s3:// data sources --------------------------------------------------------------------


def test_a_csv_source_reads_from_s3(s3_endpoint: str, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    s3.client(s3_endpoint).put_object(Bucket=BUCKET, Key="data/t.csv", Body=buffer.getvalue())
    settings = Settings(data_dir=tmp_path, s3_endpoint_url=s3_endpoint)
    source = CsvSource(kind="csv", path=f"s3://{BUCKET}/data/t.csv")
    pd.testing.assert_frame_equal(load_file(source, settings), frame)


def test_a_missing_s3_object_is_a_source_error(s3_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, s3_endpoint_url=s3_endpoint)
    source = CsvSource(kind="csv", path=f"s3://{BUCKET}/data/nope.csv")
    with pytest.raises(SourceError, match=r"Data source not found: s3://mlops-test/data/nope"):
        load_file(source, settings)


class TestSkopsFile:
    """Artifacts are skops files written with a compact schema; skops reads them as its own."""

    def test_skops_loads_it_as_it_loads_its_own(self) -> None:
        import skops.io

        X, y = load_iris(return_X_y=True, as_frame=True)  # noqa: N806
        model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
        ours, theirs = skops_bytes(model), skops.io.dumps(model)
        assert len(ours) < len(theirs)  # the schema without its indentation
        untrusted = skops.io.get_untrusted_types(data=ours)
        assert untrusted == skops.io.get_untrusted_types(data=theirs)
        loaded = skops.io.loads(ours, trusted=untrusted)
        assert (loaded.predict_proba(X) == model.predict_proba(X)).all()

    def test_a_saved_artifact_hashes_to_its_recorded_sha256(self, tmp_path: Path) -> None:
        store = LocalArtifactStore(tmp_path)
        X, y = load_iris(return_X_y=True)  # noqa: N806
        stored = store.save("iris", 1, DecisionTreeClassifier(random_state=0).fit(X, y))
        assert stored.sha256 == hashlib.sha256((tmp_path / stored.uri).read_bytes()).hexdigest()
        assert stored.size == (tmp_path / stored.uri).stat().st_size
        assert (store.load(stored.uri, stored.sha256).predict(X) == y).mean() == 1.0
