"""Loading training data: files, URLs, SQL, bundled datasets and webhook rows, windowed."""

from __future__ import annotations

import getpass
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import app.tables  # noqa: F401  (registers every table on Base.metadata)
from app.core.db import Base, make_engine, make_session_factory
from app.core.errors import SourceError
from app.core.settings import Settings
from app.core.time import set_clock
from app.datasources import stored
from app.datasources.models import DataBatch
from app.datasources.service import describe_source, load_frame
from app.pipelines.models import Pipeline
from app.spec.schema import (
    SKLEARN_DATASETS,
    CsvSource,
    IngestedSource,
    ParquetSource,
    SklearnSource,
    Source,
    SqlSource,
    Window,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PASSWORD = "hunter2-very-secret"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    # Any database URL: these tests are about reading one (tests/test_security_sources.py
    # covers which databases a spec may name).
    return Settings(source_dirs=[data_dir], http_source_timeout_s=5.0, sql_url_allow=".*")


@pytest.fixture
def clock() -> Iterator[datetime]:
    set_clock(lambda: NOW)
    yield NOW
    set_clock(None)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'mlops.db'}")
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as db_session:
        yield db_session
    engine.dispose()


def load(source: Source, settings: Settings) -> pd.DataFrame:
    """load_frame for sources that never touch the session (an unbound one is enough)."""
    with Session() as unused:
        return load_frame(source, pipeline_id=1, session=unused, settings=settings)


def csv(path: str, window: Window | None = None) -> CsvSource:
    return CsvSource(kind="csv", path=path, window=window)


def sql(url: str, query: str) -> SqlSource:
    return SqlSource(kind="sql", url=url, query=query)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- a real HTTP server


class _Handler(BaseHTTPRequestHandler):
    """Serves the server's `files`; /stream/… without Content-Length, /slow/… late."""

    server: _FileServer

    def do_GET(self) -> None:
        path = self.path.removeprefix("/stream").removeprefix("/slow")
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path == "/broken":
            self.send_error(500)
            return
        if self.path.startswith("/moved/"):
            # Elsewhere on this server, under the name "localhost" rather than its address.
            self.send_response(302)
            port = self.server.server_address[1]
            self.send_header("Location", f"http://localhost:{port}/{self.path[7:]}")
            self.end_headers()
            return
        body = self.server.files.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if not self.path.startswith("/stream"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


class _FileServer(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]


@pytest.fixture
def web() -> Iterator[_FileServer]:
    server = _FileServer(("127.0.0.1", 0), _Handler)
    server.files = {}
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def url_of(server: _FileServer, path: str, userinfo: str = "") -> str:
    host, port = server.server_address[:2]
    return f"http://{userinfo}{host!s}:{port}{path}"


# ---------------------------------------------------------------- CSV, local


def test_csv_reads_an_absolute_path_inside_the_source_dirs(
    data_dir: Path, settings: Settings
) -> None:
    path = write(data_dir / "customers.csv", "age,plan\n31,pro\n45,free\n")

    frame = load(csv(str(path)), settings)

    assert frame.to_dict("list") == {"age": [31, 45], "plan": ["pro", "free"]}


def test_relative_paths_try_each_source_dir_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(second / "only-second.csv", "x\n2\n")
    write(first / "both.csv", "x\n1\n")
    write(second / "both.csv", "x\n2\n")
    settings = Settings(source_dirs=[first, second])

    assert load(csv("only-second.csv"), settings)["x"].tolist() == [2]
    assert load(csv("both.csv"), settings)["x"].tolist() == [1]


def test_a_missing_file_names_the_path_as_written(settings: Settings) -> None:
    with pytest.raises(SourceError) as caught:
        load(csv("data/customers.csv"), settings)

    assert str(caught.value) == "Data source not found: data/customers.csv"


@pytest.mark.parametrize("path", ["../secret.csv", "sub/../../secret.csv", "/etc/passwd"])
def test_paths_outside_the_source_dirs_are_refused(
    tmp_path: Path, settings: Settings, path: str
) -> None:
    write(tmp_path / "secret.csv", "password\nhunter2\n")

    with pytest.raises(SourceError) as caught:
        load(csv(path), settings)

    assert str(caught.value) == (
        f"Data source path not allowed: {path} is outside the source directories "
        "(MLOPS_SOURCE_DIRS)"
    )


def test_a_missing_file_outside_the_source_dirs_is_refused_not_reported_missing(
    settings: Settings,
) -> None:
    with pytest.raises(SourceError, match="not allowed"):
        load(csv("../no-such-file.csv"), settings)


def test_a_symlink_out_of_the_source_dirs_is_refused(
    tmp_path: Path, data_dir: Path, settings: Settings
) -> None:
    secret = write(tmp_path / "secret.csv", "password\nhunter2\n")
    (data_dir / "innocent.csv").symlink_to(secret)

    with pytest.raises(SourceError, match=r"not allowed: innocent\.csv is outside"):
        load(csv("innocent.csv"), settings)


def test_a_broken_csv_says_why(data_dir: Path, settings: Settings) -> None:
    write(data_dir / "x.csv", "a,b\n1,2\n3,4,5,6\n")

    with pytest.raises(SourceError) as caught:
        load(csv("x.csv"), settings)

    assert str(caught.value).startswith("Could not read CSV x.csv: Error tokenizing data")


def test_empty_csv_files_are_empty_frames_not_errors(data_dir: Path, settings: Settings) -> None:
    write(data_dir / "header.csv", "age,plan\n")
    write(data_dir / "zero.csv", "")

    assert list(load(csv("header.csv"), settings).columns) == ["age", "plan"]
    assert load(csv("header.csv"), settings).empty
    assert load(csv("zero.csv"), settings).empty


def test_other_url_schemes_are_refused(settings: Settings) -> None:
    with pytest.raises(SourceError, match=r"Unsupported data source URL ftp://host/x\.csv"):
        load(csv("ftp://host/x.csv"), settings)


# ---------------------------------------------------------------- Parquet


def test_parquet_reads_a_file_written_by_pyarrow(data_dir: Path, settings: Settings) -> None:
    pq.write_table(pa.table({"age": [31, 45], "plan": ["pro", "free"]}), data_dir / "c.parquet")

    frame = load(ParquetSource(kind="parquet", path="c.parquet"), settings)

    assert frame.to_dict("list") == {"age": [31, 45], "plan": ["pro", "free"]}


def test_a_file_that_is_not_parquet_says_so(data_dir: Path, settings: Settings) -> None:
    write(data_dir / "c.parquet", "age,plan\n31,pro\n")

    with pytest.raises(SourceError, match=r"^Could not read Parquet c\.parquet: "):
        load(ParquetSource(kind="parquet", path="c.parquet"), settings)


# ---------------------------------------------------------------- over HTTP


def test_csv_and_parquet_over_http(web: _FileServer, settings: Settings, tmp_path: Path) -> None:
    pq.write_table(pa.table({"n": [1, 2, 3]}), tmp_path / "n.parquet")
    web.files["/n.csv"] = b"n\n1\n2\n3\n"
    web.files["/n.parquet"] = (tmp_path / "n.parquet").read_bytes()

    from_csv = load(csv(url_of(web, "/n.csv")), settings)
    from_parquet = load(ParquetSource(kind="parquet", path=url_of(web, "/n.parquet")), settings)

    assert from_csv["n"].tolist() == from_parquet["n"].tolist() == [1, 2, 3]


def test_http_404_is_not_found(web: _FileServer, settings: Settings) -> None:
    url = url_of(web, "/missing.csv")

    with pytest.raises(SourceError) as caught:
        load(csv(url), settings)

    assert str(caught.value) == f"Data source not found: {url}"


def test_other_http_errors_name_the_status(web: _FileServer, settings: Settings) -> None:
    url = url_of(web, "/broken")

    with pytest.raises(SourceError) as caught:
        load(csv(url), settings)

    # A 500 is tried again (4 attempts by default), and the error lists every one.
    failed = "500 Internal Server Error"
    assert str(caught.value) == (
        f"Data source unavailable: {failed} from {url} "
        f"(after 4 attempts: 1: {failed}; 2: {failed}; 3: {failed}; 4: {failed})"
    )


@pytest.mark.parametrize("prefix", ["", "/stream"], ids=["content-length", "streamed"])
def test_bodies_over_the_size_cap_are_refused(
    web: _FileServer, data_dir: Path, prefix: str
) -> None:
    web.files["/big.csv"] = b"n\n" + b"1\n" * 500
    settings = Settings(source_dirs=[data_dir], http_source_max_bytes=100)

    with pytest.raises(SourceError) as caught:
        load(csv(url_of(web, f"{prefix}/big.csv")), settings)

    assert "over the limit of 100 bytes (MLOPS_HTTP_SOURCE_MAX_BYTES)" in str(caught.value)


def test_a_body_within_the_cap_streams_in(web: _FileServer, data_dir: Path) -> None:
    web.files["/ok.csv"] = b"n\n1\n2\n"
    settings = Settings(source_dirs=[data_dir], http_source_max_bytes=100)

    assert load(csv(url_of(web, "/stream/ok.csv")), settings)["n"].tolist() == [1, 2]


def test_a_slow_server_times_out(web: _FileServer, data_dir: Path) -> None:
    web.files["/n.csv"] = b"n\n1\n"
    settings = Settings(source_dirs=[data_dir], http_source_timeout_s=0.2)

    with pytest.raises(SourceError, match=r"^Data source timed out after 0.2s: http://"):
        load(csv(url_of(web, "/slow/n.csv")), settings)


def test_a_refused_connection_is_named(settings: Settings) -> None:
    with pytest.raises(SourceError, match=r"^Could not fetch data source http://127.0.0.1:1/"):
        load(csv("http://127.0.0.1:1/n.csv"), settings)


def test_http_sources_must_match_the_operators_url_pattern(
    web: _FileServer, data_dir: Path
) -> None:
    web.files["/n.csv"] = b"n\n1\n"
    here = r"http://127\.0\.0\.1:\d+/.*"
    refused = Settings(source_dirs=[data_dir], http_url_allow=r"https://data\.example\.com/.*")
    url = url_of(web, "/n.csv")

    with pytest.raises(SourceError) as caught:
        load(csv(url), refused)
    refusal = f"Data source not allowed: {url} does not match MLOPS_HTTP_URL_ALLOW"
    assert str(caught.value) == refusal

    allowed = Settings(source_dirs=[data_dir], http_url_allow=here)
    assert load(csv(url), allowed)["n"].tolist() == [1]


def test_a_redirect_must_match_the_pattern_too(web: _FileServer, data_dir: Path) -> None:
    web.files["/n.csv"] = b"n\n1\n"
    settings = Settings(source_dirs=[data_dir], http_url_allow=r"http://127\.0\.0\.1:\d+/.*")
    url, port = url_of(web, "/moved/n.csv"), web.server_address[1]

    with pytest.raises(SourceError) as caught:
        load(csv(url), settings)
    assert str(caught.value) == (
        f"Data source not allowed: {url} redirects to http://localhost:{port}/n.csv, "
        "which does not match MLOPS_HTTP_URL_ALLOW"
    )
    # With no pattern, the same redirect is followed.
    assert load(csv(url), Settings(source_dirs=[data_dir]))["n"].tolist() == [1]


def test_url_passwords_are_masked(web: _FileServer, settings: Settings) -> None:
    url = url_of(web, "/missing.csv", userinfo=f"bot:{PASSWORD}@")

    with pytest.raises(SourceError) as caught:
        load(csv(url), settings)

    assert PASSWORD not in str(caught.value)
    assert "bot:***@127.0.0.1" in str(caught.value)
    assert describe_source(csv(url)) == f"csv {url.replace(PASSWORD, '***')}"


# ---------------------------------------------------------------- SQL on SQLite


@pytest.fixture
def people_db(data_dir: Path) -> Path:
    path = data_dir / "people.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE people (name TEXT, age INTEGER)")
        connection.executemany("INSERT INTO people VALUES (?, ?)", [("ann", 31), ("bob", 45)])
    connection.close()
    return path


def count_people(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM people").fetchone()[0])
    finally:
        connection.close()


def test_sql_on_sqlite(people_db: Path, settings: Settings) -> None:
    query = "SELECT name, age FROM people WHERE name LIKE 'a%' OR name = 'b:ob' ORDER BY name"

    frame = load(sql(f"sqlite:///{people_db}", query), settings)

    assert frame.to_dict("list") == {"name": ["ann"], "age": [31]}


def test_sqlite_paths_resolve_against_the_source_dirs(people_db: Path, settings: Settings) -> None:
    frame = load(sql("sqlite:///people.db", "SELECT * FROM people"), settings)

    assert len(frame) == 2


def test_sqlite_files_outside_the_source_dirs_are_refused(
    tmp_path: Path, settings: Settings
) -> None:
    with pytest.raises(SourceError, match="Data source path not allowed"):
        load(sql(f"sqlite:///{tmp_path / 'mlops.db'}", "SELECT 1"), settings)


def test_a_missing_sqlite_file_is_not_created(data_dir: Path, settings: Settings) -> None:
    with pytest.raises(SourceError, match=r"^Data source not found: nope\.db$"):
        load(sql("sqlite:///nope.db", "SELECT 1"), settings)

    assert not (data_dir / "nope.db").exists()


def test_a_bad_table_is_a_sql_source_error(people_db: Path, settings: Settings) -> None:
    with pytest.raises(SourceError) as caught:
        load(sql(f"sqlite:///{people_db}", "SELECT * FROM nope"), settings)

    assert str(caught.value) == "SQL source error: no such table: nope"


@pytest.mark.parametrize(
    "query",
    ["DELETE FROM people", "DROP TABLE people", "SELECT 1; DELETE FROM people"],
)
def test_sqlite_sources_cannot_write(people_db: Path, settings: Settings, query: str) -> None:
    with pytest.raises(SourceError, match=r"^SQL source error: "):
        load(sql(f"sqlite:///{people_db}", query), settings)

    assert count_people(people_db) == 2


def test_bad_database_urls_are_source_errors_without_the_password(settings: Settings) -> None:
    unparseable = f"postgresql+psycopg://app:{PASSWORD}@db:notaport/x"
    unknown = f"nosuchdb://app:{PASSWORD}@db/x"
    unreachable = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/x"

    for url in (unparseable, unknown, unreachable):
        with pytest.raises(SourceError, match=r"^SQL source error: ") as caught:
            load(sql(url, "SELECT 1"), settings)
        assert PASSWORD not in str(caught.value)


def test_sql_sources_are_described_without_the_password() -> None:
    source = sql(f"postgresql+psycopg://app:{PASSWORD}@db/x", "SELECT 1")

    assert describe_source(source) == "sql postgresql+psycopg://app:***@db/x"


# ---------------------------------------------------------------- SQL on PostgreSQL


def _postgres_url() -> str | None:
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect():
                return url
        except OperationalError:
            continue
        finally:
            engine.dispose()
    return None


@pytest.fixture
def pg_table() -> Iterator[tuple[Engine, str]]:
    url = _postgres_url()
    if url is None:
        message = "PostgreSQL is not reachable on 127.0.0.1:5432 (database test)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    engine = create_engine(url, poolclass=NullPool)
    table = f"ds_test_{uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {table} (name text, spend numeric(8, 2))")
        connection.exec_driver_sql(f"INSERT INTO {table} VALUES ('ann', 1.50), ('bob', 2.25)")
    yield engine, table
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def pg_url(engine: Engine, password: str | None = None) -> str:
    url = engine.url.set(password=password) if password else engine.url
    return url.render_as_string(hide_password=False)


def pg_rows(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


@pytest.mark.postgres
def test_sql_on_postgresql(pg_table: tuple[Engine, str], settings: Settings) -> None:
    engine, table = pg_table
    query = f"SELECT name, spend, 'a:b %s' AS literal FROM {table} WHERE name LIKE '%n%'"

    frame = load(sql(pg_url(engine), query), settings)

    assert frame.to_dict("list") == {"name": ["ann"], "spend": [1.5], "literal": ["a:b %s"]}


@pytest.mark.postgres
def test_plain_postgresql_urls_use_psycopg(
    pg_table: tuple[Engine, str], settings: Settings
) -> None:
    engine, table = pg_table
    url = pg_url(engine).replace("postgresql+psycopg://", "postgresql://")

    assert len(load(sql(url, f"SELECT * FROM {table}"), settings)) == 2


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("INSERT INTO {t} VALUES ('eve', 9)", "cannot execute INSERT in a read-only transaction"),
        ("DROP TABLE {t}", "cannot execute DROP TABLE in a read-only transaction"),
        ("COMMIT; DROP TABLE {t}", "cannot insert multiple commands into a prepared statement"),
    ],
)
def test_postgresql_sources_are_read_only(
    pg_table: tuple[Engine, str], settings: Settings, query: str, reason: str
) -> None:
    engine, table = pg_table

    with pytest.raises(SourceError) as caught:
        load(sql(pg_url(engine), query.format(t=table)), settings)

    assert str(caught.value) == f"SQL source error: {reason}"
    assert pg_rows(engine, table) == 2


@pytest.mark.postgres
def test_postgresql_errors_do_not_leak_the_password(
    pg_table: tuple[Engine, str], settings: Settings
) -> None:
    engine, _ = pg_table
    url = pg_url(engine, password=PASSWORD)  # trust auth: the password is ignored

    with pytest.raises(SourceError) as caught:
        load(sql(url, "SELECT * FROM no_such_table_here"), settings)

    assert str(caught.value) == 'SQL source error: relation "no_such_table_here" does not exist'
    assert PASSWORD not in describe_source(sql(url, "SELECT 1"))


# ---------------------------------------------------------------- bundled sklearn datasets


@pytest.mark.parametrize("dataset", SKLEARN_DATASETS)
def test_sklearn_datasets_have_a_target_column(dataset: Any, settings: Settings) -> None:
    source = SklearnSource(kind="sklearn", dataset=dataset)

    frame = load(source, settings)

    assert "target" in frame.columns
    assert len(frame) > 100
    assert describe_source(source) == f"sklearn {dataset}"


# ---------------------------------------------------------------- windows on loaded frames


def test_last_rows_keeps_the_newest_rows(data_dir: Path, settings: Settings) -> None:
    write(data_dir / "n.csv", "n\n1\n2\n3\n4\n")

    frame = load(csv("n.csv", Window(last_rows=2)), settings)

    assert frame["n"].tolist() == [3, 4]
    assert frame.index.tolist() == [0, 1]


def test_last_days_keeps_rows_dated_within_the_window(
    data_dir: Path, settings: Settings, clock: datetime
) -> None:
    write(
        data_dir / "events.csv",
        "n,at\n"
        "1,2024-05-01T00:00:00Z\n"  # 31 days before now: out
        "2,2024-05-25 12:00\n"  # naive, read as UTC: in
        "3,\n"  # no timestamp: out
        "4,2024-06-01T13:00:00+02:00\n",  # 11:00 UTC: in
    )

    frame = load(csv("events.csv", Window(last_days=7, column="at")), settings)

    assert frame["n"].tolist() == [2, 4]


def test_last_days_needs_a_column_outside_ingested_data(data_dir: Path, settings: Settings) -> None:
    write(data_dir / "n.csv", "n\n1\n")

    with pytest.raises(SourceError, match=r"^window\.last_days needs window\.column"):
        load(csv("n.csv", Window(last_days=7)), settings)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("n,at\n1,2024-05-30\n", "Window column 'when' is not in the data (columns: n, at)"),
        ("n,when\n1,yesterday\n", "Window column 'when' has a value that is not an ISO 8601"),
        ("n,when\n1,1717243200\n", "Window column 'when' holds numbers, not timestamps"),
    ],
)
def test_a_bad_window_column_is_named(
    data_dir: Path, settings: Settings, clock: datetime, text: str, problem: str
) -> None:
    write(data_dir / "n.csv", text)

    with pytest.raises(SourceError) as caught:
        load(csv("n.csv", Window(last_days=7, column="when")), settings)

    assert str(caught.value).startswith(problem)


def test_windows_are_described() -> None:
    assert describe_source(csv("a.csv", Window(last_rows=10))) == "csv a.csv, last 10 rows"
    assert describe_source(csv("a.csv", Window(last_days=1.5, column="at"))) == (
        "csv a.csv, last 1.5 days by at"
    )


# ---------------------------------------------------------------- ingested webhook rows


def add_pipeline(session: Session, name: str) -> int:
    pipeline = Pipeline(name=name, spec={}, webhook_secret="s")
    session.add(pipeline)
    session.flush()
    return pipeline.id


def add_batch(
    session: Session, pipeline_id: int, records: list[dict[str, Any]], *, days_ago: float = 0
) -> None:
    session.add(
        DataBatch(
            pipeline_id=pipeline_id,
            received_at=NOW - timedelta(days=days_ago),
            row_count=len(records),
            columns=list(records[0]) if records else [],
            parquet=stored.encode(pa.Table.from_pylist(records)),
        )
    )


@pytest.fixture
def ingested(session: Session) -> int:
    """Three batches, oldest first, plus another pipeline's batch that must never show."""
    pipeline_id = add_pipeline(session, "churn")
    other_id = add_pipeline(session, "other")
    add_batch(session, pipeline_id, [{"n": 1, "at": "2024-05-01"}], days_ago=30)
    add_batch(session, other_id, [{"n": 99, "at": "2024-06-01"}], days_ago=1)
    add_batch(session, pipeline_id, [{"n": 2, "at": "2024-05-29"}, {"n": 3}], days_ago=3)
    add_batch(session, pipeline_id, [{"n": 4, "extra": "x", "at": "2024-05-02"}], days_ago=1)
    session.commit()
    return pipeline_id


def load_ingested(session: Session, pipeline_id: int, window: Window | None = None) -> Any:
    source = IngestedSource(kind="ingested", window=window)
    return load_frame(source, pipeline_id=pipeline_id, session=session, settings=Settings())


def test_ingested_batches_concatenate_in_arrival_order(session: Session, ingested: int) -> None:
    frame = load_ingested(session, ingested)

    assert list(frame.columns) == ["n", "at", "extra"]
    assert frame["n"].tolist() == [1, 2, 3, 4]
    assert frame["extra"].isna().tolist() == [True, True, True, False]


def test_ingested_last_rows_keeps_the_newest_rows(session: Session, ingested: int) -> None:
    assert load_ingested(session, ingested, Window(last_rows=2))["n"].tolist() == [3, 4]
    assert load_ingested(session, ingested, Window(last_rows=3))["n"].tolist() == [2, 3, 4]
    assert load_ingested(session, ingested, Window(last_rows=50))["n"].tolist() == [1, 2, 3, 4]


def test_ingested_last_days_uses_arrival_time(
    session: Session, ingested: int, clock: datetime
) -> None:
    frame = load_ingested(session, ingested, Window(last_days=7))

    assert frame["n"].tolist() == [2, 3, 4]


def test_ingested_last_days_with_a_column_uses_the_column(
    session: Session, ingested: int, clock: datetime
) -> None:
    frame = load_ingested(session, ingested, Window(last_days=7, column="at"))

    assert frame["n"].tolist() == [2]


def test_no_ingested_rows_is_an_empty_frame(session: Session, clock: datetime) -> None:
    pipeline_id = add_pipeline(session, "quiet")

    assert load_ingested(session, pipeline_id).empty
    assert load_ingested(session, pipeline_id, Window(last_days=1, column="at")).empty


def test_loading_ingested_rows_never_flushes_the_session(session: Session, ingested: int) -> None:
    parquet = stored.encode(pa.table({"n": [5]}))
    pending = DataBatch(pipeline_id=ingested, row_count=1, columns=["n"], parquet=parquet)
    session.add(pending)

    frame = load_ingested(session, ingested)

    assert frame["n"].tolist() == [1, 2, 3, 4]
    assert pending in session.new
    session.rollback()


def test_ingested_sources_are_described() -> None:
    source = IngestedSource(kind="ingested", window=Window(last_days=30))

    assert describe_source(source) == (
        "ingested rows from the new-data webhook, last 30 days by arrival time"
    )


def test_the_services_own_data_dir_is_never_a_source(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / ".mlops", source_dirs=[tmp_path])
    (tmp_path / ".mlops").mkdir()
    (tmp_path / ".mlops" / "mlops.db").write_bytes(b"secret")
    source = CsvSource(kind="csv", path=".mlops/mlops.db")
    with pytest.raises(SourceError, match="Data source path not allowed"):
        load(source, settings)
