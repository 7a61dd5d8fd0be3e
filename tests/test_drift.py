"""Drift: each model version keeps a reference profile of its training data; rows ingested
since it went to production are scored against it per feature (PSI or KS), and a feature
over the threshold with enough new rows fires a retrain that names the feature."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from app.core.db import unit_of_work
from app.datasources import stored
from app.datasources.models import DataBatch
from app.pipelines import service as pipelines
from app.registry import service as registry
from app.training.reference import OTHER, reference_profile
from app.triggers.drift import (
    EPSILON,
    check_after_ingest,
    feature_score,
    ks_statistic,
    population_stability,
    psi,
)
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"
FEATURES = ["age", "monthly_spend", "plan"]
RNG = np.random.default_rng(7)


def hand_psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float:
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def scipy_d(a: Any, b: Any) -> float:
    """scipy's two-sample KS statistic; its p-value (which we do not use) warns on tiny samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ks_2samp(np.asarray(a, float), np.asarray(b, float)).statistic)


def numpy_fractions(reference: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> Any:
    """Decile bins of `reference` ([e_i, e_i+1), open ends), by numpy alone."""
    cuts = np.unique(np.quantile(reference, np.linspace(0.1, 0.9, 9)))
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    return (
        np.histogram(reference, edges)[0] / reference.size,
        np.histogram(values, edges)[0] / values.size,
    )


class TestPsi:
    def test_identical_distributions_score_zero(self) -> None:
        assert psi([0.1] * 10, [0.1] * 10) == 0.0
        values = RNG.normal(0, 1, 5_000)
        profile = reference_profile(pd.DataFrame({"x": values}), ["x"])["x"]
        assert population_stability(profile, values) == pytest.approx(0.0, abs=1e-12)
        # Another draw of the same distribution: sampling noise only.
        assert population_stability(profile, RNG.normal(0, 1, 5_000)) < 0.01

    def test_matches_the_formula(self) -> None:
        expected, actual = [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]
        by_hand = sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))
        assert psi(expected, actual) == pytest.approx(by_hand)
        assert by_hand == pytest.approx(0.2282, abs=1e-4)

    def test_empty_bin_is_floored_not_infinite(self) -> None:
        score = psi([0.5, 0.5], [1.0, 0.0])
        assert math.isfinite(score)
        assert score == pytest.approx(
            (1 - 0.5) * math.log(2) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
        )

    @pytest.mark.parametrize("shift", [0.25, 0.5, 1.0])
    def test_shifted_normal_matches_numpy_and_theory(self, shift: float) -> None:
        reference, values = RNG.normal(0, 1, 20_000), RNG.normal(shift, 1, 20_000)
        profile = reference_profile(pd.DataFrame({"x": reference}), ["x"])["x"]
        score = population_stability(profile, values)
        assert score == pytest.approx(hand_psi(*numpy_fractions(reference, values)), rel=1e-9)
        # Deciles of N(0, 1) against N(shift, 1), from the normal CDF.
        z = stats.norm.ppf(np.linspace(0, 1, 11))
        shifted = np.diff(stats.norm.cdf(z - shift))
        assert score == pytest.approx(hand_psi(np.full(10, 0.1), shifted), abs=0.02)

    def test_categorical(self) -> None:
        train = pd.Series(["basic"] * 50 + ["pro"] * 30 + ["team"] * 20)
        profile = reference_profile(pd.DataFrame({"plan": train}), ["plan"])["plan"]
        new = ["basic"] * 20 + ["pro"] * 30 + ["team"] * 40 + ["enterprise"] * 10
        expected = np.array([0.5, 0.3, 0.2, EPSILON])  # nothing else in training
        actual = np.array([0.2, 0.3, 0.4, 0.1])  # the unseen "enterprise" counts as other
        assert population_stability(profile, new) == pytest.approx(hand_psi(expected, actual))
        assert population_stability(profile, train) == 0.0
        assert population_stability(profile, [None, None]) == 0.0

    def test_numeric_values_arriving_as_text_or_missing(self) -> None:
        profile = reference_profile(pd.DataFrame({"x": np.arange(100.0)}), ["x"])["x"]
        as_text = [str(v) for v in np.arange(100.0)] + [None, "n/a"]
        assert population_stability(profile, as_text) == pytest.approx(0.0, abs=1e-12)


class TestKs:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            (RNG.normal(0, 1, 1_000), RNG.normal(0.3, 1, 800)),
            (RNG.normal(0, 1, 500), RNG.normal(0, 1, 500)),
            (RNG.uniform(-2, 2, 1_000), RNG.normal(0, 1, 3_000)),
            (RNG.integers(0, 5, 1_000).astype(float), RNG.integers(0, 6, 700).astype(float)),
            (np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0])),
            (np.array([3.0]), np.array([1.0, 2.0, 3.0, 4.0])),
        ],
        ids=["shifted-normal", "same-normal", "uniform-vs-normal", "ties", "tiny-ties", "one"],
    )
    def test_matches_scipy(self, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> None:
        assert ks_statistic(a, b) == pytest.approx(scipy_d(a, b), abs=1e-12)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(-3, 3) | st.floats(-1e6, 1e6), min_size=1, max_size=60),
        st.lists(st.integers(-3, 3) | st.floats(-1e6, 1e6), min_size=1, max_size=60),
    )
    def test_matches_scipy_on_any_samples(self, a: list[float], b: list[float]) -> None:
        assert ks_statistic(a, b) == pytest.approx(scipy_d(a, b), abs=1e-12)

    def test_empty_side_is_no_evidence(self) -> None:
        assert ks_statistic([], [1.0, 2.0]) == 0.0

    def test_categorical_ks_is_total_variation(self) -> None:
        train = pd.DataFrame({"plan": ["basic"] * 50 + ["pro"] * 50})
        profile = reference_profile(train, ["plan"])["plan"]
        assert feature_score(profile, ["basic"] * 80 + ["pro"] * 20, "ks") == pytest.approx(0.3)


class TestReferenceProfile:
    def test_shape(self) -> None:
        frame = churn_frame(3_000)
        profile = reference_profile(frame, FEATURES)
        assert list(profile) == FEATURES
        spend = profile["monthly_spend"]
        assert spend["kind"] == "numeric"
        assert spend["rows"] == 3_000
        assert (spend["edges"][0], spend["edges"][-1]) == ("-inf", "inf")
        cuts = spend["edges"][1:-1]
        assert len(cuts) == 9 and cuts == sorted(set(cuts))
        assert cuts == pytest.approx(np.quantile(frame["monthly_spend"], np.linspace(0.1, 0.9, 9)))
        assert len(spend["fractions"]) == 10
        assert spend["fractions"] == pytest.approx([0.1] * 10, abs=0.01)
        assert len(spend["sample"]) == 1_000
        assert set(spend["sample"]) <= set(frame["monthly_spend"])
        assert reference_profile(frame, FEATURES) == profile  # the sample is reproducible
        assert profile["plan"] == {
            "kind": "categorical",
            "rows": 3_000,
            "frequencies": {
                **frame["plan"].value_counts(normalize=True).to_dict(),
                OTHER: 0.0,
            },
        }
        json.dumps(profile, allow_nan=False)  # storable in PostgreSQL's json

    def test_ties_give_unique_edges(self) -> None:
        frame = pd.DataFrame({"flag": [0] * 90 + [1] * 10, "constant": [5.0] * 100})
        profile = reference_profile(frame, ["flag", "constant"])
        # The 0.9 quantile interpolates between the last 0 and the first 1.
        assert profile["flag"]["edges"] == ["-inf", 0.0, pytest.approx(0.1), "inf"]
        assert profile["flag"]["fractions"] == [0.0, 0.9, 0.1]
        assert profile["constant"]["edges"] == ["-inf", 5.0, "inf"]
        assert profile["constant"]["fractions"] == [0.0, 1.0]

    def test_top_50_categories_and_the_rest_as_other(self) -> None:
        names = [f"c{i:02d}" for i in range(60) for _ in range(100 - i)]
        profile = reference_profile(pd.DataFrame({"city": names}), ["city"])["city"]
        frequencies = profile["frequencies"]
        assert len(frequencies) == 51
        assert "c49" in frequencies and "c50" not in frequencies
        assert frequencies[OTHER] == pytest.approx(sum(100 - i for i in range(50, 60)) / len(names))
        assert sum(frequencies.values()) == pytest.approx(1.0)

    def test_missing_values_are_left_out(self) -> None:
        frame = pd.DataFrame({"x": [1.0, None, 3.0, None], "plan": ["a", None, "a", "b"]})
        profile = reference_profile(frame, ["x", "plan"])
        assert profile["x"]["rows"] == 2
        assert profile["plan"]["frequencies"] == {"a": 2 / 3, "b": 1 / 3, OTHER: 0.0}


# --- end to end: a trained production model, rows arriving, check_after_ingest ----------

DRIFT = {"kind": "drift", "method": "psi", "threshold": 0.2, "min_rows": 400}


def create_and_train(client: Any, tmp_path: Path, **trigger: Any) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    spec = pipeline_spec(triggers=[{**DRIFT, **trigger}])
    assert client.post(f"{API}/pipelines", json=spec).status_code == 201
    run = client.post(f"{BASE}/runs").json()
    assert wait_for_run(client, run["id"])["status"] == "completed"


def ingest(client: Any, frame: pd.DataFrame) -> None:
    """Store a batch as the new-data webhook would."""
    with unit_of_work(client.app.state.services.factory) as session:
        pipeline = pipelines.get(session=session, name=NAME)
        session.add(
            DataBatch(
                pipeline_id=pipeline.id,
                row_count=len(frame),
                columns=list(frame.columns),
                parquet=stored.encode(pa.Table.from_pandas(frame, preserve_index=False)),
            )
        )


def check(client: Any) -> list[int]:
    services = client.app.state.services
    with unit_of_work(services.factory) as session:
        pipeline = pipelines.get(session=session, name=NAME)
        return check_after_ingest(session, pipeline, services.executor.submit)


def spend_shifted(rows: int, seed: int = 1) -> pd.DataFrame:
    frame = churn_frame(rows, seed=seed)
    frame["monthly_spend"] += 20
    return frame


class TestDriftTrigger:
    def test_the_version_stores_its_reference(self, client: Any, tmp_path: Path) -> None:
        create_and_train(client, tmp_path)
        with unit_of_work(client.app.state.services.factory) as session:
            pipeline = pipelines.get(session=session, name=NAME)
            version = registry.production(session=session, pipeline_id=pipeline.id)
            assert version is not None
            assert version.reference == reference_profile(churn_frame(), FEATURES)

    @pytest.mark.parametrize(("method", "threshold"), [("psi", 0.2), ("ks", 0.2)])
    def test_shifted_feature_fires_a_run_naming_it(
        self, client: Any, tmp_path: Path, method: str, threshold: float
    ) -> None:
        create_and_train(client, tmp_path, method=method, threshold=threshold)
        ingest(client, spend_shifted(300))
        ingest(client, spend_shifted(200, seed=2))
        [fired] = check(client)
        run = wait_for_run(client, fired)
        assert run["status"] == "completed"
        assert run["trigger"]["kind"] == "drift"
        pattern = (
            rf"drift {method} \d+\.\d\d > 0\.2 on feature monthly_spend "
            r"over 500 new rows \(model v1\)"
        )
        assert re.fullmatch(pattern, run["trigger"]["reason"]), run["trigger"]["reason"]

    def test_unshifted_rows_do_not_fire(self, client: Any, tmp_path: Path) -> None:
        create_and_train(client, tmp_path)
        ingest(client, churn_frame(500, seed=1))
        assert check(client) == []

    def test_below_min_rows_waits_for_more(self, client: Any, tmp_path: Path) -> None:
        create_and_train(client, tmp_path)
        ingest(client, spend_shifted(300))
        assert check(client) == []
        ingest(client, spend_shifted(100, seed=2))
        [fired] = check(client)
        assert "over 400 new rows" in wait_for_run(client, fired)["trigger"]["reason"]

    def test_cooldown_holds_it_back(self, client: Any, tmp_path: Path) -> None:
        create_and_train(client, tmp_path, cooldown_s=3600)
        ingest(client, spend_shifted(500))
        [fired] = check(client)
        wait_for_run(client, fired)
        ingest(client, spend_shifted(500, seed=2))  # new rows since v2, still shifted
        assert check(client) == []
        assert client.get(f"{BASE}/runs").json()["total"] == 2

    def test_paused_pipeline_does_not_fire(self, client: Any, tmp_path: Path) -> None:
        create_and_train(client, tmp_path)
        assert client.post(f"{BASE}/pause").status_code == 200
        ingest(client, spend_shifted(500))
        assert check(client) == []
        assert client.get(f"{BASE}/runs").json()["total"] == 1
