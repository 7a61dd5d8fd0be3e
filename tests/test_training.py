"""The validate, train and evaluate steps, on real scikit-learn and real (small) data."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from app.spec.schema import Evaluation, PipelineSpec
from app.training.errors import EvaluationError, TrainingError
from app.training.evaluation import gate, score
from app.training.fingerprint import fingerprint
from app.training.holdout import Holdout, split_holdout
from app.training.preprocessing import build_preprocessor
from app.training.trainer import feature_columns, json_safe, train
from app.training.validation import check_data

ALLOWED = ("sklearn.",)
LOGISTIC = "sklearn.linear_model.LogisticRegression"


def make_spec(target: str = "target", **fields: Any) -> PipelineSpec:
    data: dict[str, Any] = {
        "name": "test-pipeline",
        "source": {"kind": "sklearn", "dataset": "iris"},
        "target": target,
        "model": {"estimator": LOGISTIC, "params": {"max_iter": 5000}},
    }
    data.update(fields)
    return PipelineSpec.model_validate(data)


def breast_cancer() -> pd.DataFrame:
    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


def iris() -> pd.DataFrame:
    frame: pd.DataFrame = load_iris(as_frame=True).frame
    return frame


def diabetes() -> pd.DataFrame:
    frame: pd.DataFrame = load_diabetes(as_frame=True).frame
    return frame


def customers() -> pd.DataFrame:
    """40 customers as a CSV source gives them: str, bool and float columns, some nulls."""
    rows = ["age,plan,active,spend,churned"]
    for i in range(40):
        age = "" if i % 10 == 3 else str(20 + i)
        plan = "" if i % 10 == 7 else ("basic", "pro", "team")[i % 3]
        churned = int(i % 2 == 0)
        rows.append(f"{age},{plan},{i % 4 == 0},{10.5 * (i % 5) + 15 * churned},{churned}")
    return pd.read_csv(io.StringIO("\n".join(rows)))


def fitted(spec: PipelineSpec, frame: pd.DataFrame) -> tuple[Pipeline, Holdout]:
    holdout = split_holdout(frame, spec, "classifier")
    return train(spec, holdout.X_train, holdout.y_train, ALLOWED).model, holdout


def numbers_frame(rows: int, seed: int) -> pd.DataFrame:
    """Two numeric features and a binary target that depends on them."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=rows).round(3), rng.uniform(0, 100, rows).round(2)
    return pd.DataFrame({"x": x, "z": z, "target": ((x + z / 50) > 1).astype(int)})


class TestValidationPasses:
    def test_classification_data_passes_with_a_summary(self) -> None:
        check = check_data(breast_cancer(), make_spec(), "classifier")
        assert check.passed
        assert check.reason == "Data validation passed"
        assert check.detail == "569 rows, 30 features, 0.000 max null fraction, 2 classes"

    def test_regression_summary_has_no_classes(self) -> None:
        check = check_data(diabetes(), make_spec(), "regressor")
        assert check.passed
        assert check.detail == "442 rows, 10 features, 0.000 max null fraction"

    def test_summary_counts_only_the_listed_features_and_their_nulls(self) -> None:
        spec = make_spec("churned", features=["age", "plan"])
        check = check_data(customers(), spec, "classifier")
        assert check.passed
        assert check.detail == "40 rows, 2 features, 0.100 max null fraction, 2 classes"


class TestValidationRefuses:
    def test_no_rows(self) -> None:
        check = check_data(breast_cancer().iloc[:0], make_spec(), "classifier")
        assert not check.passed
        assert check.reason == "Data validation failed: the data source returned no rows"
        assert check.detail == "0 rows, 31 columns"

    def test_missing_target_lists_available_columns_truncated(self) -> None:
        check = check_data(breast_cancer(), make_spec("churn"), "classifier")
        assert check.reason == (
            "Data validation failed: target column 'churn' not found (available: "
            "'mean radius', 'mean texture', 'mean perimeter', 'mean area', "
            "'mean smoothness', 'mean compactness', 'mean concavity', "
            "'mean concave points', 'mean symmetry', 'mean fractal dimension', … (21 more))"
        )

    def test_missing_feature_columns(self) -> None:
        spec = make_spec("churned", features=["age", "income", "region"])
        check = check_data(customers(), spec, "classifier")
        assert check.reason == (
            "Data validation failed: feature columns not found: 'income', 'region' "
            "(available: 'age', 'plan', 'active', 'spend', 'churned')"
        )

    def test_target_is_the_only_column(self) -> None:
        frame = pd.DataFrame({"y": [0, 1, 0, 1]})
        check = check_data(frame, make_spec("y"), "classifier")
        assert check.reason == "Data validation failed: no feature columns besides the target 'y'"

    def test_missing_required_columns(self) -> None:
        spec = make_spec("churned", validation={"required_columns": ["age", "country"]})
        check = check_data(customers(), spec, "classifier")
        assert check.reason == "Data validation failed: required columns not found: 'country'"

    def test_too_few_rows(self) -> None:
        spec = make_spec(validation={"min_rows": 100})
        check = check_data(breast_cancer().iloc[:42], spec, "classifier")
        assert check.reason == "Data validation failed: 42 rows < min_rows 100"

    def test_null_fraction_names_the_worst_column(self) -> None:
        frame = customers()
        frame.loc[:9, "spend"] = np.nan  # 10 of 40 rows; age and plan have 4 of 40
        spec = make_spec("churned", validation={"max_null_fraction": 0.05})
        check = check_data(frame, spec, "classifier")
        assert check.reason == (
            "Data validation failed: column 'spend' null fraction 0.250 > max_null_fraction 0.050"
        )

    def test_unused_columns_do_not_count_towards_nulls(self) -> None:
        spec = make_spec("churned", features=["active"], validation={"max_null_fraction": 0.0})
        assert check_data(customers(), spec, "classifier").passed

    def test_an_all_null_column_is_refused_even_at_max_null_fraction_1(self) -> None:
        frame = customers().assign(empty=np.nan)
        check = check_data(frame, make_spec("churned"), "classifier")
        assert check.reason == (
            "Data validation failed: column 'empty' has no values (all rows are null)"
        )

    def test_target_nulls_are_always_refused(self) -> None:
        frame = breast_cancer()
        frame.loc[[3, 5, 8], "target"] = np.nan
        check = check_data(frame, make_spec(), "classifier")
        assert check.reason == (
            "Data validation failed: target 'target' has 3 null values; "
            "every row needs a target to train on"
        )

    def test_classifier_needs_two_classes(self) -> None:
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, 1, 1]})
        check = check_data(frame, make_spec("y"), "classifier")
        assert check.reason == (
            "Data validation failed: target 'y' has 1 class; a classifier needs at least 2"
        )

    def test_a_regressor_may_have_a_constant_target(self) -> None:
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1, 1, 1, 1, 1]})
        spec = make_spec("y", evaluation={"holdout_fraction": 0.4})
        assert check_data(frame, spec, "regressor").passed

    def test_each_class_needs_two_rows_to_stratify(self) -> None:
        frame = iris().iloc[:101]  # 50 setosa, 50 versicolor, 1 virginica
        check = check_data(frame, make_spec(), "classifier")
        assert check.reason == (
            "Data validation failed: class 2 of target 'target' has only 1 row; "
            "a stratified holdout needs at least 2 rows per class"
        )

    def test_holdout_must_hold_every_class(self) -> None:
        frame = iris().iloc[[0, 1, 50, 51, 100, 101, 102, 103, 104, 105]]
        check = check_data(frame, make_spec(), "classifier")  # 20% of 10 rows is 2 < 3 classes
        assert check.reason == (
            "Data validation failed: holdout_fraction 0.2 of 10 rows leaves 8 train and "
            "2 holdout rows; each side needs at least 3"
        )

    def test_first_failing_rule_wins(self) -> None:
        frame = breast_cancer().iloc[:42].copy()
        frame["target"] = np.nan
        check = check_data(frame, make_spec(validation={"min_rows": 100}), "classifier")
        assert check.reason == "Data validation failed: 42 rows < min_rows 100"


class TestPreprocessing:
    def test_numbers_are_scaled_and_categories_one_hot_encoded(self) -> None:
        frame = customers().drop(columns="churned")
        preprocessor = build_preprocessor(frame).fit(frame)
        names = list(preprocessor.get_feature_names_out())
        assert names == [
            "numeric__age",
            "numeric__spend",
            "categorical__plan_basic",
            "categorical__plan_pro",
            "categorical__plan_team",
            "categorical__active_False",
            "categorical__active_True",
        ]
        out = preprocessor.transform(frame)
        assert np.allclose(out[:, :2].mean(axis=0), 0.0)
        assert not np.isnan(out).any()

    def test_nulls_are_imputed_with_median_and_most_frequent(self) -> None:
        frame = pd.DataFrame({"n": [1.0, np.nan, 3.0, 10.0], "c": ["a", None, "a", "b"]})
        preprocessor = build_preprocessor(frame).fit(frame)
        numeric = preprocessor.named_transformers_["numeric"].named_steps["impute"]
        assert numeric.statistics_.tolist() == [3.0]
        assert preprocessor.transform(frame)[1, 1:].tolist() == [1.0, 0.0]  # null -> "a"

    def test_an_unseen_category_at_predict_time_encodes_as_zeros(self) -> None:
        frame = customers().drop(columns="churned")
        preprocessor = build_preprocessor(frame).fit(frame)
        new = pd.DataFrame(
            {"age": [30.0], "plan": ["enterprise"], "active": [True], "spend": [5.0]}
        )
        assert preprocessor.transform(new)[0, 2:].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]

    def test_only_numeric_columns(self) -> None:
        frame = diabetes().drop(columns="target")
        assert build_preprocessor(frame).fit_transform(frame).shape == (442, 10)

    def test_only_categorical_columns(self) -> None:
        frame = pd.DataFrame({"flag": [True, False, True], "city": ["x", "y", "x"]})
        assert build_preprocessor(frame).fit_transform(frame).shape == (3, 4)

    def test_nullable_pandas_dtypes_with_pd_na(self) -> None:
        frame = pd.DataFrame(
            {
                "s": pd.array(["a", None, "b", "a"], dtype="string"),
                "b": pd.array([True, None, False, True], dtype="boolean"),
                "i": pd.array([1, None, 3, 5], dtype="Int64"),
                "k": pd.Categorical(["u", "v", None, "u"]),
            }
        )
        out = build_preprocessor(frame).fit_transform(frame)
        assert out.shape == (4, 1 + 2 + 2 + 2)
        assert not np.isnan(np.asarray(out, dtype=float)).any()

    def test_json_booleans_match_csv_booleans(self) -> None:
        frame = customers().drop(columns="churned")
        preprocessor = build_preprocessor(frame).fit(frame)
        as_object = pd.DataFrame(
            {
                "age": [30.0],
                "plan": ["pro"],
                "active": pd.Series([True], dtype=object),
                "spend": [5],
            }
        )
        assert preprocessor.transform(as_object)[0, 2:].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]


class TestFeaturesAndHoldout:
    def test_default_features_are_all_columns_but_the_target_in_order(self) -> None:
        assert feature_columns(make_spec("churned"), customers()) == [
            "age",
            "plan",
            "active",
            "spend",
        ]

    def test_listed_features_keep_the_spec_order(self) -> None:
        spec = make_spec("churned", features=["spend", "age"])
        assert feature_columns(spec, customers()) == ["spend", "age"]

    def test_stratified_split_keeps_class_ratios(self) -> None:
        frame = breast_cancer()
        holdout = split_holdout(frame, make_spec(), "classifier")
        assert len(holdout.X_test) == 114  # ceil(0.2 * 569)
        assert len(holdout.X_train) == 455
        assert holdout.y_test.value_counts().to_dict() == {1: 72, 0: 42}
        assert holdout.y_train.value_counts().to_dict() == {1: 285, 0: 170}
        assert list(holdout.X_test.columns) == list(frame.columns[:-1])

    def test_split_is_deterministic(self) -> None:
        spec = make_spec(evaluation={"holdout_fraction": 0.3})
        first = split_holdout(iris(), spec, "classifier")
        second = split_holdout(iris(), spec, "classifier")
        assert first.X_test.index.tolist() == second.X_test.index.tolist()
        assert first.y_test.value_counts().to_dict() == {0: 15, 1: 15, 2: 15}

    def test_regression_split_is_not_stratified(self) -> None:
        holdout = split_holdout(diabetes(), make_spec(), "regressor")
        assert (len(holdout.X_train), len(holdout.X_test)) == (353, 89)

    def test_both_sides_keep_the_source_order(self) -> None:
        holdout = split_holdout(breast_cancer(), make_spec(), "classifier")
        for side in (holdout.X_train, holdout.X_test):
            assert side.index.is_monotonic_increasing
        assert holdout.y_test.index.equals(holdout.X_test.index)

    def test_rows_keep_their_side_when_new_rows_arrive(self) -> None:
        # A random draw would move about a third of the rows; here a row's side depends on
        # its values, so production's training rows stay out of the next holdout.
        before, more = numbers_frame(5_000, seed=1), numbers_frame(1_000, seed=2)
        grown = pd.concat([before, more], ignore_index=True)
        first = split_holdout(before, make_spec(), "classifier")
        second = split_holdout(grown, make_spec(), "classifier")
        assert len(second.X_test) == math.ceil(0.2 * 6_000)
        moved = first.X_train.index.intersection(second.X_test.index)
        assert len(moved) < 0.02 * len(first.X_train)
        kept = first.X_test.index.intersection(second.X_test.index)
        assert len(kept) > 0.95 * len(first.X_test)

    def test_identical_rows_stay_on_one_side(self) -> None:
        frame = pd.concat([numbers_frame(300, seed=3)] * 3, ignore_index=True)
        holdout = split_holdout(frame, make_spec(), "classifier")
        sides = pd.Series(frame.index.isin(holdout.X_test.index)).groupby(frame.index % 300)
        assert (sides.nunique() == 1).all()

    def test_the_holdout_is_not_tied_to_the_values(self) -> None:
        # A holdout taken by raw row-hash order favoured some values over others.
        frame = numbers_frame(20_000, seed=4)
        holdout = split_holdout(frame, make_spec(), "classifier")
        for column in ("x", "z"):
            gap = holdout.X_test[column].mean() - frame[column].mean()
            assert abs(gap) < 4 * frame[column].std() / math.sqrt(len(holdout.X_test))

    def test_every_class_keeps_a_training_row(self) -> None:
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "target": [0, 0, 1, 1, 1, 1]})
        spec = make_spec(evaluation={"holdout_fraction": 0.9})
        holdout = split_holdout(frame, spec, "classifier")
        assert sorted(holdout.y_train.unique().tolist()) == [0, 1]
        assert holdout.y_test.value_counts().to_dict() == {1: 3, 0: 1}


class TestTrain:
    def test_trains_a_pipeline_and_records_params(self) -> None:
        spec = make_spec(model={"estimator": LOGISTIC, "params": {"max_iter": 5000, "C": 0.5}})
        holdout = split_holdout(breast_cancer(), spec, "classifier")
        trained = train(spec, holdout.X_train, holdout.y_train, ALLOWED)
        assert [name for name, _ in trained.model.steps] == ["preprocess", "estimator"]
        assert trained.params["max_iter"] == 5000
        assert trained.params["C"] == 0.5
        assert json.loads(json.dumps(trained.params)) == trained.params
        assert trained.fit_seconds > 0
        assert trained.model.score(holdout.X_test, holdout.y_test) > 0.95

    def test_trains_on_categorical_data_with_nulls(self) -> None:
        spec = make_spec("churned")
        model, holdout = fitted(spec, customers())
        assert model.score(holdout.X_test, holdout.y_test) >= 0.75
        new = pd.DataFrame({"age": [None], "plan": ["gold"], "active": [False], "spend": [30.0]})
        assert model.predict(new).tolist() in ([0], [1])

    def test_trains_a_regressor(self) -> None:
        spec = make_spec(model={"estimator": "sklearn.linear_model.Ridge", "params": {}})
        holdout = split_holdout(diabetes(), spec, "regressor")
        trained = train(spec, holdout.X_train, holdout.y_train, ALLOWED)
        assert trained.params["alpha"] == 1.0
        assert trained.model.score(holdout.X_test, holdout.y_test) > 0.4

    def test_a_fit_error_becomes_training_failed(self) -> None:
        spec = make_spec(model={"estimator": LOGISTIC, "params": {"solver": "liblinear"}})
        holdout = split_holdout(iris(), spec, "classifier")
        with pytest.raises(TrainingError) as caught:
            train(spec, holdout.X_train, holdout.y_train, ALLOWED)
        assert str(caught.value).startswith(
            "Training failed: The 'liblinear' solver does not support multiclass classification"
        )

    def test_a_regressor_given_text_targets_fails_training(self) -> None:
        spec = make_spec("plan", model={"estimator": "sklearn.linear_model.Ridge"})
        frame = customers().dropna(subset=["plan"])
        holdout = split_holdout(frame, spec, "regressor")
        with pytest.raises(TrainingError, match=r"^Training failed: could not convert string"):
            train(spec, holdout.X_train, holdout.y_train, ALLOWED)

    def test_an_estimator_outside_the_allow_list_fails_training(self) -> None:
        spec = make_spec(model={"estimator": "sklearn.svm.SVC"})
        holdout = split_holdout(iris(), spec, "classifier")
        with pytest.raises(TrainingError, match=r"^Training failed: 'sklearn.svm.SVC' is not"):
            train(spec, holdout.X_train, holdout.y_train, ("sklearn.linear_model.",))

    def test_params_are_made_json_safe(self) -> None:
        params = {
            "a": np.float64(0.5),
            "b": np.int64(3),
            "c": (1, "x"),
            "d": {1: [None, True]},
            "e": math.nan,
            "f": LogisticRegression(C=2.0),
        }
        assert json_safe(params) == {
            "a": 0.5,
            "b": 3,
            "c": [1, "x"],
            "d": {"1": [None, True]},
            "e": "nan",
            "f": "LogisticRegression(C=2.0)",
        }


class TestScore:
    @pytest.mark.parametrize(
        ("metric", "direct"),
        [
            ("accuracy", lambda y, p: accuracy_score(y, p)),
            ("f1", lambda y, p: f1_score(y, p)),
            ("precision", lambda y, p: precision_score(y, p)),
            ("recall", lambda y, p: recall_score(y, p)),
        ],
    )
    def test_binary_label_metrics(self, metric: str, direct: Any) -> None:
        model, holdout = fitted(make_spec(), breast_cancer())
        expected = direct(holdout.y_test, model.predict(holdout.X_test))
        assert score(model, holdout.X_test, holdout.y_test, metric, "classifier") == expected
        assert 0.9 < expected <= 1.0

    @pytest.mark.parametrize("metric", ["f1", "precision", "recall"])
    def test_binary_positive_class_is_the_greatest_label(self, metric: str) -> None:
        frame = breast_cancer()
        frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
        model, holdout = fitted(make_spec(), frame)
        predicted = model.predict(holdout.X_test)
        scorer = {"f1": f1_score, "precision": precision_score, "recall": recall_score}[metric]
        expected = scorer(holdout.y_test, predicted, pos_label="malignant")
        assert score(model, holdout.X_test, holdout.y_test, metric, "classifier") == expected

    @pytest.mark.parametrize(
        ("metric", "scorer"),
        [("f1", f1_score), ("precision", precision_score), ("recall", recall_score)],
    )
    def test_multiclass_label_metrics_are_macro(self, metric: str, scorer: Any) -> None:
        spec = make_spec(model={"estimator": LOGISTIC, "params": {"C": 0.01, "max_iter": 5000}})
        model, holdout = fitted(spec, iris())
        expected = scorer(holdout.y_test, model.predict(holdout.X_test), average="macro")
        assert score(model, holdout.X_test, holdout.y_test, metric, "classifier") == expected
        assert 0.5 < expected < 1.0

    def test_binary_roc_auc_from_predict_proba(self) -> None:
        model, holdout = fitted(make_spec(), breast_cancer())
        expected = roc_auc_score(holdout.y_test, model.predict_proba(holdout.X_test)[:, 1])
        assert score(model, holdout.X_test, holdout.y_test, "roc_auc", "classifier") == expected
        assert expected > 0.98

    def test_binary_roc_auc_from_decision_function(self) -> None:
        spec = make_spec(model={"estimator": "sklearn.svm.SVC", "params": {}})
        model, holdout = fitted(spec, breast_cancer())
        assert not hasattr(model, "predict_proba")
        expected = roc_auc_score(holdout.y_test, model.decision_function(holdout.X_test))
        assert score(model, holdout.X_test, holdout.y_test, "roc_auc", "classifier") == expected

    def test_multiclass_roc_auc_is_one_vs_rest(self) -> None:
        model, holdout = fitted(make_spec(), iris())
        proba = model.predict_proba(holdout.X_test)
        expected = roc_auc_score(holdout.y_test, proba, multi_class="ovr")
        assert score(model, holdout.X_test, holdout.y_test, "roc_auc", "classifier") == expected

    def test_multiclass_roc_auc_without_predict_proba_is_refused(self) -> None:
        spec = make_spec(model={"estimator": "sklearn.svm.SVC", "params": {}})
        model, holdout = fitted(spec, iris())
        with pytest.raises(EvaluationError, match="roc_auc on more than 2 classes needs"):
            score(model, holdout.X_test, holdout.y_test, "roc_auc", "classifier")

    def test_roc_auc_without_scores_is_refused(self) -> None:
        frame = breast_cancer()
        x, y = frame.drop(columns="target"), frame["target"]
        model = Pipeline([("estimator", MajorityClassifier())]).fit(x, y)
        with pytest.raises(EvaluationError) as caught:
            score(model, x, y, "roc_auc", "classifier")
        assert str(caught.value) == (
            "Evaluation failed: roc_auc needs a model with predict_proba or decision_function"
        )

    def test_a_label_production_never_saw_makes_the_score_multiclass(self) -> None:
        frame = iris()
        old = frame[frame["target"] < 2]
        model, _ = fitted(make_spec(), old)
        x, y = frame.drop(columns="target"), frame["target"]
        expected = f1_score(y, model.predict(x), average="macro", zero_division=0)
        assert score(model, x, y, "f1", "classifier") == expected

    def test_regression_metrics(self) -> None:
        spec = make_spec(model={"estimator": "sklearn.linear_model.Ridge", "params": {}})
        holdout = split_holdout(diabetes(), spec, "regressor")
        model = train(spec, holdout.X_train, holdout.y_train, ALLOWED).model
        x, y = holdout.X_test, holdout.y_test
        predicted = model.predict(x)
        assert score(model, x, y, "r2", "regressor") == r2_score(y, predicted)
        rmse = score(model, x, y, "rmse", "regressor")
        assert rmse == pytest.approx(math.sqrt(mean_squared_error(y, predicted)))
        assert 40 < rmse < 70
        assert score(model, x, y, "mae", "regressor") == mean_absolute_error(y, predicted)

    def test_a_classification_metric_on_a_regressor_is_refused(self) -> None:
        frame = diabetes()
        with pytest.raises(EvaluationError) as caught:
            score(None, frame, frame["target"], "accuracy", "regressor")
        assert str(caught.value) == (
            "Evaluation failed: metric accuracy needs a classifier, but the model is a regressor"
        )

    def test_a_regression_metric_on_a_classifier_is_refused(self) -> None:
        model, holdout = fitted(make_spec(), iris())
        with pytest.raises(EvaluationError, match="metric rmse needs a regressor"):
            score(model, holdout.X_test, holdout.y_test, "rmse", "classifier")


class MajorityClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A real classifier with predict only: no probabilities, no decision function."""

    def fit(self, x: pd.DataFrame, y: pd.Series) -> MajorityClassifier:
        self.classes_ = np.unique(y)
        self.majority_ = y.mode()[0]
        return self

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return np.full(len(x), self.majority_)


def accuracy_gate(min_score: float | None = 0.8, min_improvement: float = 0.0) -> Evaluation:
    return Evaluation(metric="accuracy", min_score=min_score, min_improvement=min_improvement)


def error_gate(
    metric: str = "rmse", min_score: float | None = 5.0, min_improvement: float = 0.0
) -> Evaluation:
    return Evaluation(metric=metric, min_score=min_score, min_improvement=min_improvement)


class TestGate:
    def test_below_min_score(self) -> None:
        decision = gate(0.712, None, accuracy_gate(), lower_is_better=False)
        assert not decision.passed
        assert decision.reason == "Evaluation gate: accuracy 0.712 < min_score 0.800"

    def test_passes_without_production(self) -> None:
        decision = gate(0.951, None, accuracy_gate(), lower_is_better=False)
        assert decision.passed
        assert decision.reason == "accuracy 0.951 >= min_score 0.800; no production model"

    def test_passes_when_beating_production(self) -> None:
        decision = gate(0.951, 0.93, accuracy_gate(), lower_is_better=False)
        assert decision.passed
        assert (
            decision.reason == "accuracy 0.951 >= min_score 0.800; beats production 0.930 by 0.021"
        )

    def test_fails_when_not_beating_production(self) -> None:
        decision = gate(0.801, 0.9, accuracy_gate(), lower_is_better=False)
        assert not decision.passed
        assert decision.reason == (
            "Evaluation gate: candidate accuracy 0.801 does not beat production 0.900 "
            "by min_improvement 0.000"
        )

    def test_a_tie_passes_with_zero_min_improvement(self) -> None:
        decision = gate(0.9, 0.9, accuracy_gate(), lower_is_better=False)
        assert decision.passed
        assert decision.reason.endswith("beats production 0.900 by 0.000")

    def test_a_tie_fails_with_a_min_improvement(self) -> None:
        decision = gate(0.9, 0.9, accuracy_gate(min_improvement=0.01), lower_is_better=False)
        assert not decision.passed
        assert decision.reason.endswith("by min_improvement 0.010")

    def test_exactly_min_improvement_passes_despite_float_rounding(self) -> None:
        assert 0.83 - 0.80 < 0.03  # the noise the gate must tolerate
        assert gate(0.83, 0.80, accuracy_gate(min_improvement=0.03), False).passed

    def test_min_score_is_optional(self) -> None:
        decision = gate(0.3, 0.2, accuracy_gate(min_score=None), lower_is_better=False)
        assert decision.passed
        assert decision.reason == "accuracy 0.300, no min_score; beats production 0.200 by 0.100"

    def test_a_negative_min_improvement_tolerates_a_small_regression(self) -> None:
        decision = gate(0.89, 0.9, accuracy_gate(min_improvement=-0.02), lower_is_better=False)
        assert decision.passed
        assert decision.reason == (
            "accuracy 0.890 >= min_score 0.800; trails production 0.900 by 0.010, "
            "within min_improvement -0.020"
        )

    def test_a_nan_candidate_never_passes(self) -> None:
        decision = gate(math.nan, None, accuracy_gate(min_score=None), lower_is_better=False)
        assert not decision.passed
        assert decision.reason == "Evaluation gate: candidate accuracy is nan"


class TestGateLowerIsBetter:
    def test_min_score_is_a_ceiling(self) -> None:
        decision = gate(12.3, None, error_gate(min_score=10.0), lower_is_better=True)
        assert not decision.passed
        assert decision.reason == "Evaluation gate: rmse 12.300 > min_score 10.000"

    def test_a_lower_error_beats_production(self) -> None:
        decision = gate(3.1, 3.5, error_gate(), lower_is_better=True)
        assert decision.passed
        assert decision.reason == "rmse 3.100 <= min_score 5.000; beats production 3.500 by 0.400"

    def test_a_higher_error_does_not_beat_production(self) -> None:
        decision = gate(3.6, 3.5, error_gate(), lower_is_better=True)
        assert not decision.passed
        assert decision.reason == (
            "Evaluation gate: candidate rmse 3.600 does not beat production 3.500 "
            "by min_improvement 0.000"
        )

    def test_min_improvement_means_lower_by_at_least(self) -> None:
        evaluation = error_gate("mae", min_score=None, min_improvement=0.5)
        assert not gate(3.1, 3.5, evaluation, lower_is_better=True).passed
        assert gate(3.0, 3.5, evaluation, lower_is_better=True).passed

    def test_the_spec_says_which_metrics_are_lower_is_better(self) -> None:
        spec = make_spec(evaluation={"metric": "mae"})
        assert spec.lower_is_better
        assert gate(2.0, 2.5, spec.evaluation, spec.lower_is_better).passed


class TestFingerprint:
    def test_rows_columns_and_hash(self) -> None:
        print_ = fingerprint(iris())
        assert print_["rows"] == 150
        assert print_["columns"] == [*load_iris().feature_names, "target"]
        assert len(print_["sha256"]) == 64
        int(print_["sha256"], 16)

    def test_equal_data_gives_the_same_hash(self) -> None:
        frame = iris()
        reindexed = frame.sample(frac=1.0, random_state=0).sort_index().set_axis(range(1, 151))
        assert fingerprint(iris()) == fingerprint(frame) == fingerprint(reindexed)

    def test_a_changed_value_changes_the_hash(self) -> None:
        frame = iris()
        frame.loc[17, "petal length (cm)"] = 9.9
        assert fingerprint(frame)["sha256"] != fingerprint(iris())["sha256"]

    def test_cells_pandas_cannot_hash_are_hashed_as_text(self) -> None:
        # Lists and dicts arrive from JSON records and SQL json columns; training reads them
        # as text, and so do the hash, the fingerprint and the holdout split.
        def frame() -> pd.DataFrame:
            tags = [[i % 3] if i % 3 else {"k": i % 2} for i in range(60)]
            return pd.DataFrame({"tags": tags, "x": range(60), "target": [0, 1] * 30})

        assert fingerprint(frame()) == fingerprint(frame())
        changed = frame()
        changed.at[5, "tags"] = ["other"]
        assert fingerprint(changed)["sha256"] != fingerprint(frame())["sha256"]
        holdout = split_holdout(frame(), make_spec(), "classifier")
        assert len(holdout.X_test) == 12

    def test_a_renamed_column_changes_the_hash(self) -> None:
        renamed = iris().rename(columns={"target": "species"})
        assert fingerprint(renamed)["sha256"] != fingerprint(iris())["sha256"]
