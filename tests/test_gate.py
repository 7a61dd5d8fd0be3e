"""The evaluation gate through the real run path: a retrain on bad labels is never promoted,
real concept drift still is, and production that cannot be scored is never "no production"."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sqlalchemy import create_engine, text

from app.core.settings import Settings
from tests.factories import pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
NAME = "gated"
BASE = f"{API}/pipelines/{NAME}"
CLASSIFIER = {
    "estimator": "sklearn.linear_model.LogisticRegression",
    "params": {"max_iter": 5000},
}
REGRESSOR = {"estimator": "sklearn.linear_model.Ridge", "params": {}}


def cancer() -> pd.DataFrame:
    """breast_cancer as a CSV would hold it: rows in no particular order."""
    frame = load_breast_cancer(as_frame=True).frame
    return frame.sample(frac=1, random_state=0).reset_index(drop=True)


def regression(rows: int = 600, *, drifted: bool = False) -> pd.DataFrame:
    """Three numeric features and a target that two of them explain (others after drift)."""
    rng = np.random.default_rng(7)
    a, b, c = rng.normal(size=(3, rows))
    target = -3 * a + 5 * c if drifted else 3 * a - 2 * b
    noise = rng.normal(scale=1.0, size=rows)
    return pd.DataFrame({"a": a, "b": b, "c": c, "target": (target + noise).round(4)})


def scrambled(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["target"] = np.random.default_rng(1).permutation(out["target"].to_numpy())
    return out


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row given the previous row's label, as an off-by-one join makes them."""
    out = frame.copy()
    out["target"] = np.roll(out["target"].to_numpy(), 1)
    return out


def flipped(frame: pd.DataFrame, share: float) -> pd.DataFrame:
    """The labels of a contiguous slice of rows (the first `share` of them) inverted."""
    out = frame.copy()
    rows = int(len(out) * share)
    out.loc[: rows - 1, "target"] = 1 - out.loc[: rows - 1, "target"]
    return out


def setup(client: Any, tmp_path: Path, frame: pd.DataFrame, **overrides: Any) -> None:
    write_csv(tmp_path / "data" / "gated.csv", frame)
    spec = pipeline_spec(
        NAME,
        source={"kind": "csv", "path": "data/gated.csv"},
        target="target",
        validation={"min_rows": 50},
        **{"model": CLASSIFIER, "evaluation": {"metric": "accuracy"}, **overrides},
    )
    response = client.post(f"{API}/pipelines", json=spec)
    assert response.status_code == 201, response.text


def retrain(client: Any, tmp_path: Path, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    if frame is not None:
        write_csv(tmp_path / "data" / "gated.csv", frame)
    response = client.post(f"{BASE}/runs")
    assert response.status_code == 202, response.text
    return wait_for_run(client, response.json()["id"])


def production(client: Any) -> int | None:
    version: int | None = client.get(f"{BASE}/status").json()["production_version"]
    return version


class TestBadLabelsAreNeverPromoted:
    """The issue's story on breast_cancer: v1 and v2 clean, then a retrain on bad labels."""

    @pytest.mark.parametrize(
        "corrupt",
        [
            pytest.param(scrambled, id="scrambled"),
            pytest.param(shifted, id="shifted-by-one-row"),
            # With 40 % of binary labels inverted, even a perfect model agrees with only
            # 60 % of them: its skill over guessing is at most about 0.2, min_skill's bar.
            # Rejecting is right: two labels in five are wrong (here skill 0.04).
            pytest.param(lambda f: flipped(f, 0.4), id="40%-slice-flipped"),
        ],
    )
    def test_classifier_retrain_on_bad_labels_is_rejected(
        self, client: Any, tmp_path: Path, corrupt: Any
    ) -> None:
        setup(client, tmp_path, cancer())
        assert retrain(client, tmp_path)["status"] == "completed"
        assert retrain(client, tmp_path)["status"] == "completed"

        run = retrain(client, tmp_path, corrupt(cancer()))

        assert run["status"] == "rejected", run
        assert run["error"].startswith("Evaluation gate: candidate accuracy ")
        assert "shows no real skill" in run["error"]
        assert "check the source data" in run["error"]
        metrics = run["metrics"]
        guessing = {
            "most_frequent": "always predicting the most frequent class",
            "stratified": "guessing classes in their training proportions",
        }[metrics["baseline_strategy"]]
        assert f"{guessing} scores {metrics['baseline']:.3f} on the same holdout" in run["error"]
        assert metrics["skill"] < 0.2
        assert metrics["gate_passed"] is False
        assert production(client) == 2

    @pytest.mark.parametrize(
        "corrupt", [pytest.param(scrambled, id="scrambled"), pytest.param(shifted, id="shifted")]
    )
    def test_regressor_retrain_on_bad_labels_is_rejected(
        self, client: Any, tmp_path: Path, corrupt: Any
    ) -> None:
        setup(client, tmp_path, regression(), model=REGRESSOR, evaluation={"metric": "rmse"})
        first = retrain(client, tmp_path)
        assert first["status"] == "completed", first
        assert first["metrics"]["skill"] > 0.8

        run = retrain(client, tmp_path, corrupt(regression()))

        assert run["status"] == "rejected", run
        assert "always predicting the" in run["error"]
        assert "shows no real skill" in run["error"]
        assert run["metrics"]["baseline_strategy"] in ("mean", "median")
        assert production(client) == 1

    def test_the_check_can_be_turned_off(self, client: Any, tmp_path: Path) -> None:
        setup(client, tmp_path, scrambled(cancer()), evaluation={"min_skill": None})
        run = retrain(client, tmp_path)
        assert run["status"] == "completed", run
        assert run["metrics"]["baseline"] is not None


class TestConceptDriftStillPromotes:
    def test_classifier_learning_a_new_relation(self, client: Any, tmp_path: Path) -> None:
        frame = cancer()
        setup(client, tmp_path, frame)
        assert retrain(client, tmp_path)["status"] == "completed"
        # The world changed: the label now follows other features, learnably.
        drifted = frame.copy()
        texture = drifted["mean texture"]
        drifted["target"] = (texture > texture.median()).astype(int)

        run = retrain(client, tmp_path, drifted)

        assert run["status"] == "completed", run
        metrics = run["metrics"]
        assert metrics["candidate"] > metrics["production"] + 0.2
        assert metrics["skill"] > 0.8
        assert production(client) == 2

    def test_regressor_learning_a_new_relation(self, client: Any, tmp_path: Path) -> None:
        setup(client, tmp_path, regression(), model=REGRESSOR, evaluation={"metric": "r2"})
        assert retrain(client, tmp_path)["status"] == "completed"

        run = retrain(client, tmp_path, regression(drifted=True))

        assert run["status"] == "completed", run
        assert run["metrics"]["production"] < 0 < 0.9 < run["metrics"]["candidate"]
        assert production(client) == 2


def artifact(settings: Settings, version: int) -> Path:
    [path] = settings.resolved_artifact_dir.glob(f"{NAME}@*/v{version}.skops")
    return path


def set_sha256(settings: Settings, version: int, data: bytes) -> None:
    engine = create_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE model_versions SET sha256 = :sha WHERE version = :v"),
            {"sha": hashlib.sha256(data).hexdigest(), "v": version},
        )
    engine.dispose()


def missing(settings: Settings) -> str:
    artifact(settings, 1).unlink()
    return "is missing from the artifact store"


def corrupt(settings: Settings) -> str:
    path = artifact(settings, 1)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    return "failed its sha256 check"


def unloadable(settings: Settings) -> str:
    # Bytes that hash right (the record was changed with them) but are no model at all.
    data = b"PK\x03\x04 not a model"
    artifact(settings, 1).write_bytes(data)
    set_sha256(settings, 1, data)
    return "is not a readable model file"


class TestUnscorableProductionFailsClosed:
    def production_v1(self, client: Any, tmp_path: Path, **evaluation: Any) -> None:
        """v1 in production, promoted by hand: nothing has loaded it into memory yet."""
        manual = {"mode": "manual", "target": {"kind": "builtin"}}
        setup(client, tmp_path, cancer(), deployment=manual, evaluation=evaluation)
        assert retrain(client, tmp_path)["status"] == "awaiting_approval"
        assert client.post(f"{BASE}/models/1/promote").status_code == 200

    @pytest.mark.parametrize("cause", [missing, corrupt, unloadable])
    def test_a_broken_artifact_rejects_the_run(
        self, client: Any, settings: Settings, tmp_path: Path, cause: Any
    ) -> None:
        self.production_v1(client, tmp_path)
        expected = cause(settings)

        run = retrain(client, tmp_path)

        assert run["status"] == "rejected", run
        assert run["error"].startswith(
            "Evaluation gate: production version 1 could not be scored on this holdout ("
        )
        assert expected in run["error"]
        assert "promote this version with force" in run["error"]
        assert run["metrics"]["production_unscored"]["policy"] == "reject"
        assert production(client) == 1

    def test_changed_columns_reject_the_run(self, client: Any, tmp_path: Path) -> None:
        setup(client, tmp_path, cancer())
        assert retrain(client, tmp_path)["status"] == "completed"
        renamed = cancer().rename(columns={"mean radius": "radius (mean)"})

        run = retrain(client, tmp_path, renamed)

        assert run["status"] == "rejected", run
        assert "production version 1 could not be scored" in run["error"]
        assert "mean radius" in run["error"]
        assert production(client) == 1

    def test_approve_policy_waits_for_a_person(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        self.production_v1(client, tmp_path, on_unscorable_production="approve")
        missing(settings)

        run = retrain(client, tmp_path)

        assert run["status"] == "awaiting_approval", run
        evaluate = next(s for s in run["steps"] if s["name"] == "evaluate")
        assert "production version 1 could not be scored" in evaluate["detail"]
        assert "no production model" not in evaluate["detail"]
        assert client.post(f"{BASE}/models/2/promote").status_code == 200
        entry = client.get(f"{BASE}/promotions").json()[0]
        assert entry["evidence"]["production_unscored"]["version"] == 1
        assert entry["evidence"]["production_unscored"]["policy"] == "approve"

    def test_promote_policy_promotes_and_says_so_in_the_ledger(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        self.production_v1(client, tmp_path, on_unscorable_production="promote")
        client.put(
            BASE,
            json=pipeline_spec(
                NAME,
                source={"kind": "csv", "path": "data/gated.csv"},
                target="target",
                validation={"min_rows": 50},
                model=CLASSIFIER,
                evaluation={"metric": "accuracy", "on_unscorable_production": "promote"},
            ),
        )
        corrupt(settings)

        run = retrain(client, tmp_path)

        assert run["status"] == "completed", run
        assert production(client) == 2
        entry = client.get(f"{BASE}/promotions").json()[0]
        assert entry["actor"] == "system"
        unscored = entry["evidence"]["production_unscored"]
        assert (unscored["version"], unscored["policy"]) == (1, "promote")
        assert "failed its sha256 check" in unscored["error"]
        assert "promoted without a comparison" in entry["reason"]
        assert "no production model" not in entry["reason"]


class TestOverridesAreExplicit:
    def rejected_v2(self, client: Any, tmp_path: Path) -> str:
        setup(client, tmp_path, cancer())
        assert retrain(client, tmp_path)["status"] == "completed"
        run = retrain(client, tmp_path, scrambled(cancer()))
        assert run["status"] == "rejected"
        reason: str = run["error"]
        return reason

    def test_promoting_a_rejected_version_is_409_quoting_the_gate(
        self, client: Any, tmp_path: Path
    ) -> None:
        reason = self.rejected_v2(client, tmp_path)

        response = client.post(f"{BASE}/models/2/promote", json={"reason": "looks fine to me"})

        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        detail = response.json()["detail"]
        assert detail.startswith(f"Version 2 of {NAME} was rejected by its gate: {reason}")
        assert '{"force": true, "reason": "…"}' in detail
        assert production(client) == 1
        assert len(client.get(f"{BASE}/promotions").json()) == 1

    def test_force_needs_a_reason(self, client: Any, tmp_path: Path) -> None:
        self.rejected_v2(client, tmp_path)
        for body in ({"force": True}, {"force": True, "reason": "  "}):
            response = client.post(f"{BASE}/models/2/promote", json=body)
            assert response.status_code == 422, response.text
            problem = response.json()
            assert problem["errors"][0]["loc"] == "body.force"
            assert "needs a reason: say why the gate is overridden" in problem["detail"]
        assert production(client) == 1

    def test_force_with_a_reason_promotes_and_the_ledger_says_so(
        self, client: Any, tmp_path: Path
    ) -> None:
        gate_reason = self.rejected_v2(client, tmp_path)
        body = {"force": True, "reason": "labels were re-keyed on purpose; verified by hand"}

        response = client.post(f"{BASE}/models/2/promote", json=body)

        assert response.status_code == 200, response.text
        assert production(client) == 2
        entry = client.get(f"{BASE}/promotions").json()[0]
        assert entry == response.json()
        assert (entry["forced"], entry["gate_reason"]) == (True, gate_reason)
        assert entry["reason"] == body["reason"]
        assert entry["actor"] == "admin token (MLOPS_ADMIN_TOKEN)"
        first = client.get(f"{BASE}/promotions").json()[1]
        assert (first["forced"], first["gate_reason"]) == (False, None)
        audit = client.get(f"{API}/audit", params={"action": "model.promote"}).json()
        assert any(e["detail"].get("forced") is True for e in audit["items"])

    def test_a_version_that_passed_needs_no_force(self, client: Any, tmp_path: Path) -> None:
        manual = {"mode": "manual", "target": {"kind": "builtin"}}
        setup(client, tmp_path, cancer(), deployment=manual)
        assert retrain(client, tmp_path)["status"] == "awaiting_approval"
        response = client.post(f"{BASE}/models/1/promote")
        assert response.status_code == 200, response.text
        assert response.json()["forced"] is False


class TestChanceLevel:
    """The shuffled-label scores are computed with numpy; they must be sklearn's scores."""

    @pytest.mark.parametrize(
        ("metric", "classes"),
        [
            ("accuracy", 2),
            ("f1", 2),
            ("precision", 2),
            ("recall", 2),
            ("roc_auc", 2),
            ("f1", 3),
            ("precision", 3),
            ("recall", 3),
            ("accuracy", 3),
        ],
    )
    def test_classifier_scores_match_sklearn(self, metric: str, classes: int) -> None:
        from sklearn.linear_model import LogisticRegression

        self.check(LogisticRegression(max_iter=1000), metric, classes)

    @pytest.mark.parametrize("metric", ["r2", "rmse", "mae"])
    def test_regressor_scores_match_sklearn(self, metric: str) -> None:
        from sklearn.linear_model import Ridge

        self.check(Ridge(), metric, 0)

    def check(self, estimator: Any, metric: str, classes: int) -> None:
        from app.training import chance
        from app.training.evaluation import score

        rng = np.random.default_rng(5)
        X = pd.DataFrame(rng.normal(size=(90, 3)), columns=["a", "b", "c"])  # noqa: N806
        signal = X["a"] + rng.normal(size=90)
        y = pd.Series(pd.qcut(signal, classes, labels=False) if classes else signal)
        model = estimator.fit(X, y)
        kind = "classifier" if classes else "regressor"
        shuffled = np.stack([rng.permutation(y.to_numpy()) for _ in range(5)])
        fast = chance._scores(chance.Scored(model, X, None), y.to_numpy(), shuffled, metric, kind)
        slow = [score(model, X, pd.Series(row), metric, kind) for row in shuffled]
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)

    @pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "f1"])
    def test_the_score_and_the_chance_level_share_one_prediction(self, metric: str) -> None:
        from sklearn.ensemble import RandomForestClassifier

        from app.training.chance import MAX_ROWS, chance_skill
        from app.training.evaluation import PredictedOnce, score

        rng = np.random.default_rng(3)
        rows = MAX_ROWS + 500  # the chance level takes a sample of the rows
        X = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])  # noqa: N806
        y = pd.Series((X["a"] + rng.normal(size=rows) > 0).astype(int))
        model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
        calls: list[str] = []

        class Counted(RandomForestClassifier):  # type: ignore[misc]
            def predict_proba(self, X: Any) -> Any:  # noqa: N803
                calls.append("predict_proba")
                return super().predict_proba(X)

        model.__class__ = Counted
        alone = (
            score(model, X, y, metric, "classifier"),
            chance_skill(model, X, y, metric, "classifier", 0.5),
        )
        calls.clear()
        # The training process scores the candidate; the service, which has only what was
        # predicted (pickled across), computes the chance level from it.
        once = PredictedOnce(model, X)
        candidate = score(once, X, y, metric, "classifier")
        recorded = pickle.loads(pickle.dumps(once.recorded()))
        assert (candidate, chance_skill(recorded, X, y, metric, "classifier", 0.5)) == alone
        assert calls == ["predict_proba"]  # a forest's predict is its predict_proba's argmax

    def test_recorded_predictions_answer_only_for_their_rows(self) -> None:
        from sklearn.svm import SVC

        from app.training.errors import EvaluationError
        from app.training.evaluation import PredictedOnce

        X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})  # noqa: N806
        model = SVC().fit(X, [0, 0, 0, 1, 1, 1])  # no predict_proba without probability=True
        once = PredictedOnce(model, X)
        once.predict(X)
        recorded = pickle.loads(pickle.dumps(once.recorded()))
        assert list(recorded.classes_) == [0, 1]
        assert list(recorded.predict(X)) == [0, 0, 0, 1, 1, 1]
        assert not hasattr(recorded, "predict_proba")
        with pytest.raises(EvaluationError, match="did not record predict for these rows"):
            recorded.predict(X.iloc[1:])
        with pytest.raises(EvaluationError, match="did not record decision_function"):
            recorded.decision_function(X)

    def test_a_lucky_draw_on_a_small_holdout_is_within_chance(self) -> None:
        from app.spec.schema import Evaluation
        from app.training.evaluation import Baseline, gate

        # Skill 0.25 clears min_skill 0.2, but on 40 rows luck alone reaches 0.3.
        baseline = Baseline("most_frequent", 0.6, chance=0.3, rows=40)
        decision = gate(0.7, None, Evaluation(metric="accuracy"), False, baseline)
        assert not decision.passed
        assert "closes only 0.25 of the gap to a perfect score" in decision.reason
        assert (
            "holdout of 40 rows, predictions unrelated to the labels reach 0.30" in decision.reason
        )
        assert "within chance" in decision.reason
