"""New-data webhook: signed JSON, CSV and Parquet rows are stored once per delivery, checked
against the pipeline's columns, and fire the new_data trigger; secrets rotate with a grace."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, func, select

from app.core.db import unit_of_work
from app.core.settings import Settings
from app.core.time import set_clock, utcnow
from app.datasources import stored
from app.datasources.models import DataBatch
from app.datasources.service import load_frame
from app.pipelines import service as pipelines
from app.spec.schema import IngestedSource
from app.webhooks.models import WebhookDelivery
from tests.factories import churn_frame, pipeline_spec, wait_for_run
from tests.server import Server

API = "/api/v1"
NAME = "ingest-churn"
DATA = f"{API}/pipelines/{NAME}/data"
JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
INGESTED = {"kind": "ingested"}


# --- signing, as a sender would do it ---------------------------------------------------


def mlops_signature(secret: str, body: bytes, at: datetime | None = None) -> str:
    t = int((at or utcnow()).timestamp())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def records(frame: pd.DataFrame) -> bytes:
    return json.dumps({"records": frame.to_dict(orient="records")}).encode()


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def post(
    client: Any,
    body: bytes,
    secret: str,
    content_type: str = JSON,
    *,
    github: bool = False,
    **headers: str,
) -> Any:
    signature = (
        {"X-Hub-Signature-256": github_signature(secret, body)}
        if github
        else {"X-Mlops-Signature": mlops_signature(secret, body)}
    )
    sent = {"Content-Type": content_type, **signature, **headers}
    return client.post(DATA, content=body, headers=sent)


def create(client: Any, **overrides: Any) -> str:
    """A pipeline on the `ingested` source; returns its webhook secret."""
    spec = pipeline_spec(NAME, source=INGESTED, **overrides)
    response = client.post(f"{API}/pipelines", json=spec)
    assert response.status_code == 201, response.text
    secret: str = response.json()["webhook_secret"]
    return secret


def batch_rows(settings: Settings) -> list[list[dict[str, Any]]]:
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            return [
                stored.decode(data).to_pylist()
                for data in connection.scalars(select(DataBatch.parquet).order_by(DataBatch.id))
            ]
    finally:
        engine.dispose()


def batch_count(settings: Settings) -> int:
    return len(batch_rows(settings))


def delivery_count(settings: Settings) -> int:
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(WebhookDelivery)) or 0
    finally:
        engine.dispose()


@pytest.fixture
def moved_clock() -> Iterator[Any]:
    """Move the app's clock by a timedelta; the wall clock comes back after the test."""

    def move(by: timedelta) -> None:
        set_clock(lambda: datetime.now(UTC) + by)

    try:
        yield move
    finally:
        set_clock(None)


def errors_of(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors: list[dict[str, str]] = response.json()["errors"]
    return errors


# --- bodies --------------------------------------------------------------------------


class TestBodies:
    def test_json_records_are_stored(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        response = post(client, records(churn_frame(20)), secret)
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["rows"] == 20
        assert answer["columns"] == ["age", "monthly_spend", "plan", "churned"]
        assert answer["fired"] == []
        [rows] = batch_rows(settings)
        assert rows[0] == churn_frame(20).to_dict(orient="records")[0]

    def test_csv_is_stored_with_numbers_and_nulls(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        body = b"age,monthly_spend,plan,churned\r\n31,50.5,pro,1\r\n44,,basic,0\r\n"
        response = post(client, body, secret, "text/csv; charset=utf-8", github=True)
        assert response.status_code == 202, response.text
        assert response.json()["rows"] == 2
        assert batch_rows(settings) == [
            [
                {"age": 31, "monthly_spend": 50.5, "plan": "pro", "churned": 1},
                {"age": 44, "monthly_spend": None, "plan": "basic", "churned": 0},
            ]
        ]

    @pytest.mark.parametrize(
        "content_type", [PARQUET, "application/x-parquet", "application/octet-stream"]
    )
    def test_parquet_is_stored_json_safe(
        self, client: Any, settings: Settings, content_type: str
    ) -> None:
        secret = create(client)
        frame = churn_frame(3)
        frame["monthly_spend"] = [1.5, float("nan"), 2.5]
        frame["seen_at"] = pd.to_datetime(["2024-06-01T10:00:00Z"] * 3)
        response = post(client, parquet(frame), secret, content_type)
        assert response.status_code == 202, response.text
        [rows] = batch_rows(settings)
        assert rows[1]["monthly_spend"] is None
        assert rows[0]["seen_at"] == "2024-06-01T10:00:00+00:00"
        assert isinstance(rows[0]["age"], int)

    def test_other_media_types_are_refused(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        for content_type, body in (("text/plain", b"age=1"), ("application/octet-stream", b"x")):
            response = post(client, body, secret, content_type)
            assert response.status_code == 415, response.text
        assert batch_count(settings) == 0

    def test_an_empty_batch_is_refused(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        assert errors_of(post(client, b'{"records": []}', secret)) == [
            {"loc": "body.records", "msg": "is empty: send at least one row"}
        ]
        assert errors_of(post(client, b"age,churned\n", secret, "text/csv"))[0]["loc"] == (
            "body.records"
        )
        assert batch_count(settings) == 0

    def test_a_body_over_the_limit_is_refused(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        settings.webhook_max_bytes = 200
        body = records(churn_frame(20))
        response = post(client, body, secret)
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert "200 bytes" in response.json()["detail"]
        # Without Content-Length (chunked), the bytes read are counted.
        headers = {"Content-Type": JSON, "X-Mlops-Signature": mlops_signature(secret, body)}
        chunked = client.post(DATA, content=iter([body[:150], body[150:]]), headers=headers)
        assert chunked.status_code == 413
        assert batch_count(settings) == 0


# --- signatures ----------------------------------------------------------------------


Signer = Callable[[str, bytes], dict[str, str]]
WRONG = "whsec_wrong"
BAD_SIGNATURES: dict[str, tuple[Signer, str]] = {
    "missing": (lambda secret, body: {}, "Missing signature"),
    "malformed": (lambda secret, body: {"X-Mlops-Signature": "v1=abc"}, "Malformed"),
    "malformed github": (lambda secret, body: {"X-Hub-Signature-256": "sha1=ab"}, "Malformed"),
    "wrong secret": (
        lambda secret, body: {"X-Mlops-Signature": mlops_signature(WRONG, body)},
        "signature mismatch",
    ),
    "wrong github secret": (
        lambda secret, body: {"X-Hub-Signature-256": github_signature(WRONG, body)},
        "signature mismatch",
    ),
    "tampered body": (
        lambda secret, body: {"X-Mlops-Signature": mlops_signature(secret, body + b" ")},
        "signature mismatch",
    ),
    "stale timestamp": (
        lambda secret, body: {
            "X-Mlops-Signature": mlops_signature(secret, body, utcnow() - timedelta(seconds=310))
        },
        "outside the 300 s tolerance",
    ),
    "future timestamp": (
        lambda secret, body: {
            "X-Mlops-Signature": mlops_signature(secret, body, utcnow() + timedelta(seconds=310))
        },
        "outside the 300 s tolerance",
    ),
}


class TestSignatures:
    def test_github_signature_is_accepted(self, client: Any) -> None:
        secret = create(client)
        assert post(client, records(churn_frame(5)), secret, github=True).status_code == 202

    @pytest.mark.parametrize("case", list(BAD_SIGNATURES))
    def test_bad_signatures_are_refused_and_nothing_is_stored(
        self, client: Any, settings: Settings, case: str
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        signed, says = BAD_SIGNATURES[case]
        sent = {"Content-Type": JSON, **signed(secret, body)}
        response = client.post(DATA, content=body, headers=sent)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert says in response.json()["detail"]
        assert batch_count(settings) == 0

    def test_unknown_pipeline_is_401_like_a_wrong_secret(self, client: Any) -> None:
        body = records(churn_frame(2))
        response = client.post(
            f"{API}/pipelines/nope/data",
            content=body,
            headers={"Content-Type": JSON, "X-Mlops-Signature": mlops_signature("x", body)},
        )
        assert response.status_code == 401
        assert "signature mismatch" in response.json()["detail"]


class TestRotation:
    def test_old_secret_works_during_the_grace_period_only(
        self, client: Any, moved_clock: Any
    ) -> None:
        old = create(client)
        rotate = client.post(
            f"{API}/pipelines/{NAME}/webhook-secret/rotate", json={"grace_s": 3600}
        )
        assert rotate.status_code == 200, rotate.text
        new = rotate.json()["webhook_secret"]
        assert new.startswith("whsec_") and new != old
        until = datetime.fromisoformat(rotate.json()["previous_valid_until"])
        assert until.utcoffset() == timedelta(0)
        assert timedelta(minutes=59) < until - utcnow() <= timedelta(hours=1)
        body = records(churn_frame(5))
        assert post(client, body, old).status_code == 202
        assert post(client, body, new, github=True).status_code == 202
        moved_clock(timedelta(hours=1, minutes=1))
        refused = post(client, body, old)
        assert refused.status_code == 401
        assert "signature mismatch" in refused.json()["detail"]
        assert post(client, body, old, github=True).status_code == 401
        assert post(client, body, new).status_code == 202

    def test_no_grace_and_bad_grace(self, client: Any) -> None:
        old = create(client)
        url = f"{API}/pipelines/{NAME}/webhook-secret/rotate"
        assert client.post(url, json={"grace_s": 8 * 86400}).status_code == 422
        assert client.post(url, json={"grace": 1}).status_code == 422
        assert client.post(url, json={"grace_s": 0}).status_code == 200
        assert post(client, records(churn_frame(5)), old).status_code == 401
        assert client.post(f"{API}/pipelines/nope/webhook-secret/rotate").status_code == 404

    def test_rotation_without_a_body_gives_an_hour(self, client: Any) -> None:
        create(client)
        rotate = client.post(f"{API}/pipelines/{NAME}/webhook-secret/rotate")
        assert rotate.status_code == 200, rotate.text
        until = datetime.fromisoformat(rotate.json()["previous_valid_until"])
        assert timedelta(minutes=59) < until - utcnow() <= timedelta(hours=1)


# --- columns and values ----------------------------------------------------------------


class TestColumns:
    def test_spec_features_are_the_columns(self, client: Any, settings: Settings) -> None:
        secret = create(client, features=["age", "plan"])
        rows = [
            {"age": 30, "plan": "pro", "churned": 0},
            {"age": 31, "plan": "pro", "churned": 1, "shoe_size": 44},
            {"age": 32, "plan": "pro"},
            {"plan": "basic", "churned": 0},
        ]
        errors = errors_of(post(client, json.dumps({"records": rows}).encode(), secret))
        assert [e["loc"] for e in errors] == [
            "body.records.1.shoe_size",
            "body.records.2.churned",
            "body.records.3.age",
        ]
        assert errors[1]["msg"] == "missing required column"
        assert "unknown column" in errors[0]["msg"]
        csv = b"age,churned,extra\n1,0,2\n"
        csv_errors = errors_of(post(client, csv, secret, "text/csv"))
        assert csv_errors == [
            {"loc": "body.columns", "msg": "missing required column 'plan'"},
            {"loc": "body.columns", "msg": "unknown column 'extra': not a feature or the target"},
        ]
        assert batch_count(settings) == 0

    def test_without_features_batches_keep_their_first_columns(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        no_target = b"age,plan\n1,pro\n"
        assert errors_of(post(client, no_target, secret, "text/csv")) == [
            {"loc": "body.columns", "msg": "missing required column 'churned'"}
        ]
        assert post(client, b"age,plan,churned\n1,pro,0\n", secret, "text/csv").status_code == 202
        fewer = errors_of(post(client, b"age,churned\n1,0\n", secret, "text/csv"))
        assert fewer == [{"loc": "body.columns", "msg": "missing required column 'plan'"}]
        more = errors_of(post(client, b"age,plan,churned,x\n1,pro,0,1\n", secret, "text/csv"))
        assert more[0]["loc"] == "body.columns"
        assert "unknown column 'x'" in more[0]["msg"]
        json_more = b'{"records": [{"age": 1, "plan": "pro", "churned": 0, "x": 1}]}'
        assert errors_of(post(client, json_more, secret))[0]["loc"] == "body.records.0.x"
        # A JSON row may leave out a non-required column: it is a null.
        partial = b'{"records": [{"age": 1, "plan": "pro", "churned": 0}, {"churned": 1}]}'
        assert post(client, partial, secret).status_code == 202
        assert batch_rows(settings)[1][1] == {"age": None, "plan": None, "churned": 1}

    def test_unreadable_values_are_named_by_row_and_column(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        assert post(client, records(churn_frame(5)), secret).status_code == 202
        body = (
            b'{"records": ['
            b'{"age": 30, "monthly_spend": 1.0, "plan": "pro", "churned": 0},'
            b'{"age": "old", "monthly_spend": 1.0, "plan": "pro", "churned": 0},'
            b'{"age": "41", "monthly_spend": NaN, "plan": {"tier": 1}, "churned": 0},'
            b'{"age": 5, "monthly_spend": Infinity, "plan": ["a"], "churned": 1}'
            b"]}"
        )
        errors = errors_of(post(client, body, secret))
        assert [e["loc"] for e in errors] == [
            "body.records.1.age",
            "body.records.2.monthly_spend",
            "body.records.2.plan",
            "body.records.3.monthly_spend",
            "body.records.3.plan",
        ]
        assert errors[0]["msg"] == "expected a number (this column is numeric), got 'old'"
        assert "NaN is not valid JSON" in errors[1]["msg"]
        assert "nested objects and lists" in errors[2]["msg"]
        assert batch_count(settings) == 1

    def test_csv_words_in_a_numeric_column_and_only_twenty_errors(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        lines = ["age,plan,churned", *[f"{i},pro,0" for i in range(10)], "ten,pro,0"]
        errors = errors_of(post(client, "\n".join(lines).encode(), secret, "text/csv"))
        # The first batch decides the type too: most ages are numbers.
        assert errors == [
            {
                "loc": "body.records.10.age",
                "msg": "expected a number (this column is numeric), got 'ten'",
            }
        ]
        many = ["age,plan,churned", "1,pro,0", *["x,pro,0" for _ in range(30)]]
        assert post(client, "\n".join(many[:2]).encode(), secret, "text/csv").status_code == 202
        assert len(errors_of(post(client, "\n".join(many).encode(), secret, "text/csv"))) == 20
        assert batch_count(settings) == 1

    def test_malformed_bodies(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        assert errors_of(post(client, b"{not json", secret))[0]["loc"] == "body"
        assert errors_of(post(client, b'{"rows": []}', secret))[0]["loc"] == "body.rows"
        assert errors_of(post(client, b'{"records": [1]}', secret))[0]["loc"] == "body.records.0"
        assert errors_of(post(client, b"a,b\n1\n", secret, "text/csv"))[0]["loc"] == (
            "body.records.0"
        )
        assert errors_of(post(client, b"PAR1nope", secret, PARQUET))[0]["loc"] == "body"
        assert batch_count(settings) == 0


# --- big batches, and what is stored ------------------------------------------------------


def big_csv(rows: int, bad_row: int | None = None) -> bytes:
    lines = ["age,monthly_spend,plan,churned"]
    lines += [
        f"{'forty' if i == bad_row else 20 + i % 50},{i / 7:.3f},{'pro' if i % 3 else ''},{i % 2}"
        for i in range(rows)
    ]
    return "\n".join(lines).encode()


def ingested_frame(client: Any) -> pd.DataFrame:
    """The pipeline's rows as its `ingested` source loads them for training."""
    services = client.app.state.services
    with unit_of_work(services.factory) as session:
        pipeline = pipelines.get(session=session, name=NAME)
        return load_frame(
            IngestedSource(kind="ingested"),
            pipeline_id=pipeline.id,
            session=session,
            settings=services.settings,
        )


MIXED_ROWS: list[dict[str, Any]] = [
    {"age": 31, "monthly_spend": 50.5, "plan": "pro", "seen_at": "2024-06-01T10:00:00+00:00"},
    {"age": 44, "monthly_spend": None, "plan": None, "seen_at": "2024-06-02T11:30:00+00:00"},
    {"age": None, "monthly_spend": 7.0, "plan": "basic", "seen_at": None},
]


def mixed_bodies() -> dict[str, bytes]:
    """MIXED_ROWS (with churned) as a sender would write them in each format."""
    rows = [{**row, "churned": i % 2} for i, row in enumerate(MIXED_ROWS)]
    table = pa.Table.from_pylist(rows).set_column(
        3, "seen_at", pa.array([pd.Timestamp(r["seen_at"]) if r["seen_at"] else None for r in rows])
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    csv = ["age,monthly_spend,plan,seen_at,churned"] + [
        ",".join("" if v is None else str(v) for v in row.values()) for row in rows
    ]
    return {
        JSON: json.dumps({"records": rows}).encode(),
        "text/csv": "\n".join(csv).encode(),
        PARQUET: sink.getvalue(),
    }


class TestStoredBatches:
    def test_a_bad_value_deep_in_a_10k_row_csv_is_named(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        # The first batch decides the column is numeric (most ages are numbers) and is refused.
        expected = [
            {
                "loc": "body.records.9876.age",
                "msg": "expected a number (this column is numeric), got 'forty'",
            }
        ]
        assert errors_of(post(client, big_csv(10_000, 9876), secret, "text/csv")) == expected
        accepted = post(client, big_csv(10_000), secret, "text/csv")
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["rows"] == 10_000
        assert errors_of(post(client, big_csv(10_000, 9876), secret, "text/csv")) == expected
        assert batch_count(settings) == 1

    def test_many_bad_cells_are_reported_row_by_row(self, client: Any) -> None:
        secret = create(client)
        assert post(client, big_csv(10), secret, "text/csv").status_code == 202
        lines = ["age,monthly_spend,plan,churned"] + [
            f"{'x' if i % 2 else 1},{'y' if i % 3 == 0 else 1.5},pro,0" for i in range(40)
        ]
        errors = errors_of(post(client, "\n".join(lines).encode(), secret, "text/csv"))
        locs = [e["loc"] for e in errors]
        assert len(locs) == 20
        assert locs[:5] == [
            "body.records.0.monthly_spend",
            "body.records.1.age",
            "body.records.3.age",
            "body.records.3.monthly_spend",
            "body.records.5.age",
        ]

    def test_json_bad_values_deep_in_a_big_batch_are_named(self, client: Any) -> None:
        secret = create(client)
        rows = churn_frame(5_000).to_dict(orient="records")
        body = json.dumps({"records": rows}).encode()
        at = body.rindex(b'"monthly_spend": ') + len(b'"monthly_spend": ')
        end = body.index(b",", at)
        errors = errors_of(post(client, body[:at] + b"Infinity" + body[end:], secret))
        assert errors == [
            {
                "loc": "body.records.4999.monthly_spend",
                "msg": "Infinity is not valid JSON; send null for a missing value",
            }
        ]

    def test_parquet_values_are_checked_like_the_others(self, client: Any) -> None:
        secret = create(client)
        assert post(client, records(churn_frame(5)), secret).status_code == 202
        frame = churn_frame(3).astype({"age": str})
        frame.loc[1, "age"] = "old"
        errors = errors_of(post(client, parquet(frame), secret, PARQUET))
        assert errors == [
            {
                "loc": "body.records.1.age",
                "msg": "expected a number (this column is numeric), got 'old'",
            }
        ]
        frame.loc[1, "age"] = " 41 "  # a numeric string is a number
        assert post(client, parquet(frame), secret, PARQUET).status_code == 202

    def test_the_three_body_types_read_back_identically(self, client: Any) -> None:
        secret = create(client)
        for content_type, body in mixed_bodies().items():
            response = post(client, body, secret, content_type)
            assert response.status_code == 202, (content_type, response.text)
        frame = ingested_frame(client)
        assert list(frame.columns) == ["age", "monthly_spend", "plan", "seen_at", "churned"]
        n = len(MIXED_ROWS)
        json_rows, csv_rows, parquet_rows = (
            frame.iloc[i * n : (i + 1) * n].reset_index(drop=True) for i in range(3)
        )
        pd.testing.assert_frame_equal(csv_rows, json_rows)
        pd.testing.assert_frame_equal(parquet_rows, json_rows)
        assert json_rows["age"].tolist()[:2] == [31, 44] and pd.isna(json_rows["age"][2])
        assert json_rows["plan"].tolist()[0] == "pro" and pd.isna(json_rows["plan"][1])
        assert json_rows["seen_at"][1] == "2024-06-02T11:30:00+00:00"

    def test_a_category_column_stores_numbers_as_text(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        assert post(client, records(churn_frame(5)), secret).status_code == 202
        body = b'{"records": [{"age": 1, "monthly_spend": 2, "plan": 3, "churned": 0}]}'
        assert post(client, body, secret).status_code == 202
        assert batch_rows(settings)[1] == [
            {"age": 1, "monthly_spend": 2, "plan": "3", "churned": 0}
        ]


# --- idempotency -----------------------------------------------------------------------


class TestIdempotency:
    def test_a_repeat_gets_the_first_answer(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        first = post(client, body, secret, **{"Idempotency-Key": "d-1"})
        again = post(client, body, secret, github=True, **{"Idempotency-Key": "d-1"})
        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert batch_count(settings) == 1
        # The key, and the replay key of the first request's signature.
        assert delivery_count(settings) == 2

    def test_the_same_key_with_another_body_is_refused(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        assert (
            post(client, records(churn_frame(5)), secret, **{"Idempotency-Key": "d-1"}).status_code
            == 202
        )
        other = post(client, records(churn_frame(6)), secret, **{"Idempotency-Key": "d-1"})
        errors = errors_of(other)
        assert errors[0]["loc"] == "header.Idempotency-Key"
        assert "Idempotency-Key" in other.json()["detail"]
        assert batch_count(settings) == 1

    def test_delivery_headers_of_github_and_mlops_are_keys(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        for seed, header in enumerate(("X-GitHub-Delivery", "X-Mlops-Delivery")):
            body = records(churn_frame(5, seed=seed))
            first = post(client, body, secret, github=True, **{header: f"{header}-1"})
            again = post(client, body, secret, github=True, **{header: f"{header}-1"})
            assert again.json() == first.json()
            assert again.headers["Idempotent-Replayed"] == "true"
        assert batch_count(settings) == 2

    def test_a_key_is_new_again_after_the_window(
        self, client: Any, settings: Settings, moved_clock: Any
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        first = post(client, body, secret, **{"Idempotency-Key": "d-1"}).json()
        moved_clock(timedelta(seconds=settings.webhook_idempotency_s + 60))
        later = post(client, body, secret, **{"Idempotency-Key": "d-1"})
        assert later.status_code == 202
        assert "Idempotent-Replayed" not in later.headers
        assert later.json()["batch_id"] != first["batch_id"]
        assert batch_count(settings) == 2
        assert delivery_count(settings) == 2  # the stale pair went; the new one stays

    def test_a_refused_delivery_is_not_remembered(self, client: Any, settings: Settings) -> None:
        secret = create(client)
        assert (
            post(client, b'{"records": []}', secret, **{"Idempotency-Key": "d-1"}).status_code
            == 422
        )
        good = post(client, records(churn_frame(5)), secret, **{"Idempotency-Key": "d-1"})
        assert good.status_code == 202
        assert "Idempotent-Replayed" not in good.headers


# --- the new_data trigger --------------------------------------------------------------


NEW_DATA = [{"kind": "new_data", "min_rows": 100}]


class TestNewDataTrigger:
    def test_fires_at_min_rows_and_counts_from_the_last_run(self, client: Any) -> None:
        secret = create(client, triggers=NEW_DATA)
        assert post(client, records(churn_frame(60, seed=1)), secret).json()["fired"] == []
        [first] = post(client, records(churn_frame(60, seed=2)), secret).json()["fired"]
        run = wait_for_run(client, first)
        assert run["trigger"] == {"kind": "new_data", "reason": "new data: 120 rows >= 100"}
        assert run["actor"] == "webhook"
        # Rows that arrived before the run started were its data; the count starts afresh.
        assert post(client, records(churn_frame(60, seed=3)), secret).json()["fired"] == []
        [second] = post(client, records(churn_frame(60, seed=4)), secret).json()["fired"]
        assert second != first
        run = wait_for_run(client, second)
        assert run["trigger"]["reason"] == "new data: 120 rows >= 100"

    def test_a_paused_pipeline_stores_rows_without_firing(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client, triggers=[{"kind": "new_data", "min_rows": 1}])
        assert client.post(f"{API}/pipelines/{NAME}/pause").status_code == 200
        assert post(client, records(churn_frame(5)), secret).json()["fired"] == []
        assert batch_count(settings) == 1

    def test_a_batch_with_nulls_makes_a_rejected_run(self, client: Any) -> None:
        secret = create(
            client,
            triggers=[{"kind": "new_data", "min_rows": 50}],
            validation={"min_rows": 10, "max_null_fraction": 0.0},
        )
        frame = churn_frame(60).astype({"monthly_spend": object})
        frame.loc[:4, "monthly_spend"] = None
        response = post(client, records(frame), secret)
        assert response.status_code == 202, response.text
        [run_id] = response.json()["fired"]
        run = wait_for_run(client, run_id)
        assert run["status"] == "rejected", run
        assert "null fraction" in run["error"]
        assert "monthly_spend" in run["error"]
        assert run["model_version"] is None
        assert client.get(f"{API}/pipelines/{NAME}/models").json() == []


# --- concurrency, on the real server ------------------------------------------------


def test_100_concurrent_identical_posts_make_one_batch(server: Server, tmp_path: Path) -> None:
    server.start()
    with server.api() as api:
        created = api.post("/pipelines", json=pipeline_spec(NAME, source=INGESTED))
        assert created.status_code == 201, created.text
        secret = created.json()["webhook_secret"]
    body = records(churn_frame(50))
    headers = {
        "Content-Type": JSON,
        "X-Mlops-Signature": mlops_signature(secret, body),
        "Idempotency-Key": "same-delivery",
    }
    start = threading.Barrier(100)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with httpx.Client(base_url=server.url, timeout=60, limits=limits) as http:

        def send(_: int) -> httpx.Response:
            start.wait()
            return http.post(DATA, content=body, headers=headers)

        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(pool.map(send, range(100)))
    assert [a.status_code for a in answers] == [202] * 100, answers[0].text
    assert len({a.json()["batch_id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 99
    url = server.env.get("MLOPS_DATABASE_URL") or f"sqlite:///{tmp_path / '.mlops' / 'mlops.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(DataBatch)) == 1
            # The delivery key and the signature's replay key.
            assert connection.scalar(select(func.count()).select_from(WebhookDelivery)) == 2
    finally:
        engine.dispose()
