"""Event triggers measured over HTTP: metric breach -> run started, and webhook ingestion."""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from bench.harness import TARGET, BenchError, tiny_spec, ts, write_dataset
from bench.triggers_server import Row, Server, pct, signature

BREACH = "bench-breach"
BREACH_WARMUP = 3
INGEST_WARMUP = 2
OBSERVATION = {"observations": [{"metric": "accuracy", "value": 0.5}]}


# --- metric breach -> run started ---------------------------------------------------------


def breach_spec() -> dict[str, Any]:
    """The tiny iris pipeline; any `accuracy` observation below 0.85 fires it."""
    trigger = {
        "kind": "metric",
        "metric": "accuracy",
        "operator": "<",
        "threshold": 0.85,
        "aggregate": "last",
        "window": 1,
        "min_observations": 1,
        "cooldown_s": 0,
    }
    return {**tiny_spec(), "name": BREACH, "triggers": [trigger]}


@dataclass(frozen=True)
class Breach:
    client_ms: float  # started_at - client clock just before the POST
    server_ms: float  # started_at - created_at
    post_ms: float  # the POST's round trip (observations stored, trigger judged, run fired)
    healthz_ms: float  # baseline: GET /healthz round trip, same client, same moment
    get_run_ms: float  # baseline: GET /api/v1/runs/{id} round trip


def breaches(server: Server, count: int, poll_s: float) -> list[Breach]:
    """Post one breaching observation at a time; each fires a run, waited out before the next."""
    out: list[Breach] = []
    for i in range(BREACH_WARMUP + count):
        sent, start = time.time(), time.perf_counter()
        response = server.api.post(f"/pipelines/{BREACH}/metrics", json=OBSERVATION)
        post_s = time.perf_counter() - start
        if response.status_code != 202 or len(response.json().get("fired", [])) != 1:
            raise BenchError(f"breach {i} fired nothing: {response.status_code} {response.text}")
        run = server.wait_final(response.json()["fired"][0], poll_s)
        if run["started_at"] is None:
            raise BenchError(f"run {run['id']} ended {run['status']} without starting")
        healthz = _round_trip(lambda: server.root.get("/healthz"))
        get_run = _round_trip(partial(server.api.get, f"/runs/{run['id']}"))
        if i >= BREACH_WARMUP:
            started = ts(run["started_at"])
            out.append(
                Breach(
                    client_ms=(started - sent) * 1000,
                    server_ms=(started - ts(run["created_at"])) * 1000,
                    post_ms=post_s * 1000,
                    healthz_ms=healthz * 1000,
                    get_run_ms=get_run * 1000,
                )
            )
    return out


def _round_trip(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - start
    if not response.is_success:
        raise BenchError(f"{response.request.url}: {response.status_code} {response.text}")
    return elapsed


def print_breaches(found: list[Breach], poll_s: float) -> None:
    print(f"\n-- metric breach -> run started: {len(found)} breaches of {BREACH} (iris,")
    print("   DecisionTree; metric trigger: accuracy, last, < 0.85, cooldown 0), one at a time")
    print(
        f"   after {BREACH_WARMUP} warm-up ones; each fired run polled every {poll_s * 1000:g} ms"
        " until it ends; the baselines are taken right after each run"
    )
    columns = (
        ("POST /metrics sent -> started_at", [b.client_ms for b in found]),
        ("  created_at -> started_at (server)", [b.server_ms for b in found]),
        ("  POST /metrics round trip", [b.post_ms for b in found]),
        ("baseline GET /healthz round trip", [b.healthz_ms for b in found]),
        ("baseline GET /api/v1/runs/{id} round trip", [b.get_run_ms for b in found]),
    )
    _percentile_table("ms", columns)


def breach_rows(found: list[Breach]) -> list[Row]:
    client = [b.client_ms for b in found]
    health = [b.healthz_ms for b in found]
    get_run = [b.get_run_ms for b in found]
    return [
        Row(
            f"metric breach -> started_at p{q}",
            pct(client, q),
            "ms",
            f"healthz {pct(health, q):.1f}, GET run {pct(get_run, q):.1f} ms",
            limit,
        )
        for q, limit in ((50, 20.0), (99, 100.0))
    ]


# --- webhook ingestion ------------------------------------------------------------------


def ingest_spec(name: str) -> dict[str, Any]:
    """A pipeline fed by its webhook, with a new_data trigger that is checked but never fires."""
    return {
        "name": name,
        "source": {"kind": "ingested"},
        "target": TARGET,
        "model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {}},
        "evaluation": {"metric": "accuracy", "holdout_fraction": 0.2},
        "triggers": [{"kind": "new_data", "min_rows": 1_000_000_000}],
    }


@dataclass(frozen=True)
class Bodies:
    rows: int
    csv: bytes
    json: bytes


def make_bodies(data: Path, rows: int) -> Bodies:
    """The same rows (8 numbers, a category, the label) as CSV and as JSON records."""
    csv = write_dataset(data / f"ingest-{rows}.csv", rows, seed=11).read_bytes()
    records = pd.read_csv(io.BytesIO(csv)).to_dict(orient="records")
    return Bodies(rows, csv, json.dumps({"records": records}).encode())


@dataclass(frozen=True)
class Ingest:
    kind: str  # csv | json
    rows: int
    body_bytes: int
    server_s: list[float]  # POST round trips
    parse_s: list[float]  # baseline: pandas parsing the same body in this process

    def rate(self, seconds: list[float]) -> float:
        return self.rows / statistics.median(seconds)


def ingest(server: Server, kind: str, body: bytes, rows: int, repeats: int) -> Ingest:
    """Post the body `repeats` times (after warm-ups), each freshly signed, to its own pipeline;
    each post is preceded by the in-process pandas parse, so both see the same noise."""
    name = f"bench-ingest-{kind}"
    secret = server.create_pipeline(ingest_spec(name))["webhook_secret"]
    content_type = "text/csv" if kind == "csv" else "application/json"
    parse = _parse_csv if kind == "csv" else _parse_json
    server_s: list[float] = []
    parse_s: list[float] = []
    for i in range(INGEST_WARMUP + repeats):
        start = time.perf_counter()
        if len(parse(body)) != rows:
            raise BenchError(f"pandas read a different row count from the {kind} body")
        parsed = time.perf_counter() - start
        headers = {"Content-Type": content_type, "X-Mlops-Signature": signature(secret, body)}
        start = time.perf_counter()
        response = server.api.post(f"/pipelines/{name}/data", content=body, headers=headers)
        posted = time.perf_counter() - start
        if response.status_code != 202 or response.json().get("rows") != rows:
            raise BenchError(f"{kind} batch {i}: {response.status_code} {response.text[:500]}")
        if i >= INGEST_WARMUP:
            server_s.append(posted)
            parse_s.append(parsed)
    return Ingest(kind, rows, len(body), server_s, parse_s)


def _parse_csv(body: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(body))


def _parse_json(body: bytes) -> pd.DataFrame:
    return pd.DataFrame(json.loads(body)["records"])


def print_ingest(results: list[Ingest]) -> None:
    first = results[0]
    print(f"\n-- webhook ingestion: {first.rows:,}-row batches (8 numbers, 1 category, the")
    print(
        f"   label), {len(first.server_s)} posts per format after {INGEST_WARMUP} warm-ups, each"
        " signed, no Idempotency-Key;"
    )
    print("   the new_data trigger is checked on every post (never fires); one pipeline per format")
    columns: list[tuple[str, list[float]]] = []
    for result in results:
        size = f"{result.kind.upper()} ({result.body_bytes / 1e6:.2f} MB)"
        columns.append((f"POST /data {size} round trip", [s * 1000 for s in result.server_s]))
        columns.append((f"  baseline pandas parse of {size}", [s * 1000 for s in result.parse_s]))
    _percentile_table("ms", columns)
    for result in results:
        print(
            f"  {result.kind.upper()}: {result.rate(result.server_s):,.0f} rows/s through the"
            f" webhook (median), pandas alone {result.rate(result.parse_s):,.0f} rows/s"
        )


def ingest_rows(results: list[Ingest]) -> list[Row]:
    rows = []
    for result in results:
        baseline = f"pandas {result.rate(result.parse_s):,.0f} rows/s"
        limit = 100_000.0 if result.kind == "csv" else None
        rows.append(
            Row(
                f"webhook {result.kind.upper()} {result.rows // 1000}k-row batch, median",
                result.rate(result.server_s),
                "rows/s",
                baseline,
                limit,
                at_least=True,
            )
        )
    return rows


def _percentile_table(unit: str, columns: Sequence[tuple[str, list[float]]]) -> None:
    print(f"  {unit:<44}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for label, values in columns:
        figures = "".join(f"{pct(values, q):8.1f}" for q in (50, 95, 99, 100))
        print(f"  {label:<44}{figures}")
