"""The five steps of a run: load_data -> validate -> train -> evaluate -> deploy.

Each step is a function of the run's state; heavy work happens outside any transaction and
each database write is its own short unit of work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from app.auth.roles import SYSTEM
from app.core.db import read_only_unit, unit_of_work
from app.core.faults import crash_point
from app.core.retry import RetryPolicy
from app.datasources.service import describe_source, load_frame
from app.execution import compute, fitting, processes
from app.execution.champion import (
    ProductionScore,
    Scoring,
    current_version,
    production_score,
    unscorable,
)
from app.execution.env import WorkerEnv
from app.execution.outcomes import AwaitApproval, Failed, Rejected, StepOutcome, Stopped
from app.registry import promotion
from app.registry import service as registry
from app.registry.serving import LoadedModel
from app.runs.models import Run
from app.spec.estimators import EstimatorKind, resolve_estimator
from app.spec.schema import PipelineSpec
from app.training.baseline import no_skill_baseline
from app.training.chance import Draws, chance_skill, draws
from app.training.errors import EvaluationError
from app.training.evaluation import Baseline, GateDecision, candidate_gate, gate, skill
from app.training.fingerprint import DataFingerprint, fingerprint
from app.training.holdout import Split
from app.training.reference import reference_profile
from app.training.trainer import feature_columns
from app.training.validation import check_data

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What one run knows so far; passed from step to step in the worker thread."""

    run_id: int
    pipeline_id: int
    pipeline_name: str
    spec: PipelineSpec
    kind: EstimatorKind
    finalize: Callable[[Session, str], None]
    # Why the run must stop now (cancelled, out of time, lease lost), or None; asked while a
    # fit runs, so that the fit is killed instead of waited for.
    interrupt: Callable[[str], Stopped | None]
    frame: pd.DataFrame | None = None
    # Split by the run's training process, which keeps the training rows for the fit.
    split: processes.Pending[Split] | None = None
    holdout: Split | None = None
    trained: fitting.Candidate | None = None
    # The training process that holds the split rows, then the candidate: load_data to the end.
    trainer: processes.Child | None = None
    held: ExitStack = field(default_factory=ExitStack)
    version: int | None = None
    sha256: str | None = None
    fingerprint: Future[DataFingerprint] | None = None
    reference: Future[dict[str, Any]] | None = None
    production: Future[ProductionScore] | None = None
    baseline: Future[Baseline] | None = None
    draws: Future[Draws] | None = None
    chance: Future[float | None] | None = None
    candidate_version: int | None = None  # the version the artifact is written as
    metrics: dict[str, Any] = field(default_factory=dict)


def load_data(state: RunState, env: WorkerEnv) -> str:
    # Read-only: on SQLite a write transaction would hold the database's one write lock for
    # as long as the source takes to read, and every tick and claim would wait behind it.
    attempts: list[str] = []
    with read_only_unit(env.factory) as session:
        frame = compute.run(
            load_frame,
            state.spec.source,
            pipeline_id=state.pipeline_id,
            session=session,
            settings=env.settings,
            attempts=attempts,
        )
    state.frame = frame
    # The run's training process splits the rows while this one records the step and checks
    # them; it keeps the training side for the fit (which waits for the checks).
    state.split = _trainer(state).start(fitting.split, (frame, state.spec, state.kind))
    state.held.callback(_collect, state.split)
    where = describe_source(state.spec.source)
    # An http(s) source that needed more than one try says so, attempt by attempt.
    fetched = f" {attempts[0]}" if attempts else ""
    return f"{len(frame)} rows x {len(frame.columns)} columns from {where}{fetched}"


def validate(state: RunState, env: WorkerEnv) -> str:
    assert state.frame is not None
    # The training process is splitting the same rows meanwhile (load_data), with its own
    # interpreter lock; a rejected run just drops the split. No model is trained before the
    # data passes.
    check = compute.run(check_data, state.frame, state.spec, state.kind)
    if not check.passed:
        raise Rejected(check.reason)
    return check.detail


def train_model(state: RunState, env: WorkerEnv) -> str:
    assert state.frame is not None and state.split is not None
    with read_only_unit(env.factory) as session:  # while the split is being finished
        version = registry.next_version(session=session, pipeline_id=state.pipeline_id)
    try:
        h = state.holdout = state.split.result(lambda: state.interrupt("train"))
    except processes.ProcessLost as exc:
        raise Failed(f"Training failed: {exc}") from exc
    frame = state.frame
    fitted = _trainer(state).start(fitting.fit, (_task(state, env, version),))
    # While the candidate fits in a training process, this process does the rest of the
    # run's work on the other core: scoring production on the same holdout (evaluate checks
    # that it is still production before it uses the score), hashing the data and profiling
    # it for drift triggers. Started after the fit: these threads would hold the interpreter
    # lock that sending the fit needs.
    state.production = compute.submit(production_score, _scoring(state, env))
    metric = state.spec.evaluation.metric
    state.baseline = compute.submit(no_skill_baseline, h.y_train, h.y_test, metric, state.kind)
    state.draws = compute.submit(draws, h.y_test)  # the chance level's label shuffles
    state.fingerprint = compute.submit(fingerprint, frame, h.hashes)
    state.reference = compute.submit(reference_profile, frame, feature_columns(state.spec, frame))
    crash_point("during_train")
    try:
        _scored(state, fitted, version)
    except processes.ProcessLost as exc:
        raise Failed(f"Training failed: {exc}") from exc
    assert state.trained is not None
    estimator = state.spec.model.estimator.rpartition(".")[2]
    rows = h.train_rows
    return f"{estimator} fitted on {rows} rows in {state.trained.fit_seconds:.2f} s"


def _task(state: RunState, env: WorkerEnv, version: int) -> fitting.Task:
    """What the training process fits, and where its artifact goes."""
    settings = env.settings
    # The artifact is written outside a transaction; one active run per pipeline keeps the
    # version number ours, and the unique (pipeline, version) constraint would refuse it
    # otherwise. The pipeline's id is in the directory: a re-created name (a new history
    # beside an archived one) never overwrites the archived one's files.
    return fitting.Task(
        spec=state.spec,
        kind=state.kind,
        allowed_prefixes=settings.allowed_estimators,
        memory_mb=settings.training_memory_mb,
        store=env.artifacts,
        pipeline=f"{state.pipeline_name}@{state.pipeline_id}",
        version=version,
    )


def _scored(state: RunState, fitted: processes.Pending[fitting.Candidate], version: int) -> None:
    """Wait for the candidate, fitted and scored in the training process, which goes on to
    write the artifact while this process computes the chance level and the gate (evaluate
    waits for it to register)."""
    assert state.holdout is not None and state.baseline is not None and state.draws is not None
    h = state.holdout
    state.trained = fitted.result(lambda: state.interrupt("train"))
    metric, no_skill = state.spec.evaluation.metric, state.baseline.result().value
    recorded = state.trained.predictions
    drawn = state.draws.result()
    state.chance = compute.submit(
        chance_skill, recorded, h.X_test, h.y_test, metric, state.kind, no_skill, drawn
    )
    state.candidate_version = version


def _trainer(state: RunState) -> processes.Child:
    """The run's training process, reserved from load_data until the run has ended; it forgets
    the split rows and the candidate then, unless deploy took the candidate for serving."""
    if state.trainer is None:
        state.trainer = state.held.enter_context(processes.reserved())
        state.held.callback(_forget, state.trainer)
    return state.trainer


def _collect(pending: processes.Pending[Any]) -> None:
    """Read the answer to a call a run that ended early never asked for, so that its training
    process is free again (a stop killed it, or the call failed: nothing to read then)."""
    with suppress(Exception):
        pending.result(None)


def _forget(child: processes.Child) -> None:
    if not child.healthy():  # a child killed by a stop holds nothing any more
        return
    try:
        child.call(fitting.forget, (), None)
    except processes.ProcessLost as exc:  # it is not reused: nothing is kept either way
        log.warning("the training process ended before it dropped the candidate: %s", exc)


def evaluate(state: RunState, env: WorkerEnv) -> str:
    assert state.holdout is not None and state.trained is not None and state.frame is not None
    assert state.baseline is not None and state.chance is not None
    metric = state.spec.evaluation.metric
    candidate = state.trained.score  # scored in the training process
    if isinstance(candidate, EvaluationError):
        raise candidate
    baseline = replace(state.baseline.result(), chance=state.chance.result())
    production = _current_production_score(state, env)
    decision, ending, unscored = _judge(candidate, baseline, production, state.spec)
    state.metrics = {
        "metric": metric,
        "candidate": candidate,
        "production": production.value,
        "baseline": baseline.value,
        "baseline_strategy": baseline.strategy,
        "skill": skill(candidate, baseline.value, metric),
        "chance_skill": baseline.chance,
        "holdout_rows": len(state.holdout.X_test),
        "gate": decision.reason,
        "gate_passed": decision.passed,
        **({"production_note": production.note} if production.note else {}),
        **({"production_unscored": unscored} if unscored else {}),
    }
    _register_version(state, env)
    if not decision.passed:
        raise Rejected(decision.reason)
    if ending is not None:
        raise ending
    return decision.reason


def _judge(
    candidate: float, baseline: Baseline, production: ProductionScore, spec: PipelineSpec
) -> tuple[GateDecision, StepOutcome | None, dict[str, Any] | None]:
    """The gate's decision, how the run ends early if it does, and the evidence of a
    production version that could not be scored (then the candidate's own checks decide
    first, and evaluation.on_unscorable_production after them)."""
    evaluation, lower_is_better = spec.evaluation, spec.lower_is_better
    if production.error is None:
        return gate(candidate, production.value, evaluation, lower_is_better, baseline), None, None
    own = candidate_gate(candidate, evaluation, lower_is_better, baseline)
    if not own.passed:
        return own, None, None
    return unscorable(production, evaluation, own)


def deploy(state: RunState, env: WorkerEnv) -> str:
    assert state.version is not None
    if state.spec.deployment.mode == "manual":
        raise AwaitApproval(f"version {state.version} passed every gate; waiting for approval")
    request = promotion.Request(
        actor=SYSTEM,
        reason=f"run {state.run_id}: {state.metrics['gate']}",
        evidence={"run_id": state.run_id, **state.metrics},
        public_url=env.settings.public_url,
        url_allow=env.settings.http_url_allow,
        retry=RetryPolicy.of(env.settings),
    )
    detail = f"version {state.version} promoted to production"
    # The run completes in the promotion's own transaction (see worker._fence), with this detail.
    promotion.promote(
        env.factory,
        name=state.pipeline_name,
        version=state.version,
        request=request,
        fence=lambda session, deployed: state.finalize(session, _with_webhook(detail, deployed)),
    )
    _serve_trained_model(state, env)
    return detail


def _with_webhook(detail: str, deployed: str) -> str:
    # A webhook target's answer, every attempt included, belongs in the step's detail.
    return detail if deployed.startswith("served by the built-in") else f"{detail}; {deployed}"


STEPS: tuple[tuple[str, Callable[[RunState, WorkerEnv], str]], ...] = (
    ("load_data", load_data),
    ("validate", validate),
    ("train", train_model),
    ("evaluate", evaluate),
    ("deploy", deploy),
)


def estimator_kind(spec: PipelineSpec, env: WorkerEnv) -> EstimatorKind:
    """Classifier or regressor, from the allow-listed estimator class."""
    return resolve_estimator(spec.model.estimator, env.settings.allowed_estimators).kind


def _serve_trained_model(state: RunState, env: WorkerEnv) -> None:
    """Hand the promoted model to /predict; the run has ended by now, so its way back from
    the training process costs the run nothing."""
    assert state.frame is not None and state.trainer is not None
    assert state.version is not None and state.sha256 is not None
    try:
        model = state.trainer.call(fitting.take_model, (), None)
    except processes.ProcessLost as exc:
        log.warning("version %s loads from its artifact when first used: %s", state.version, exc)
        return
    features = feature_columns(state.spec, state.frame)
    loaded = LoadedModel(state.pipeline_id, state.version, state.sha256, features, model)
    env.models.put(loaded)


def _scoring(state: RunState, env: WorkerEnv) -> Scoring:
    assert state.holdout is not None
    metric = state.spec.evaluation.metric
    return Scoring(env.factory, env.models, state.pipeline_id, state.holdout, metric, state.kind)


def _current_production_score(state: RunState, env: WorkerEnv) -> ProductionScore:
    """The score taken during training, or a fresh one if production changed meanwhile."""
    assert state.production is not None
    scored = state.production.result()
    if current_version(env.factory, state.pipeline_id) == scored.version:
        return scored
    return compute.run(production_score, _scoring(state, env))


def _register_version(state: RunState, env: WorkerEnv) -> None:
    assert state.trained is not None and state.frame is not None
    features = feature_columns(state.spec, state.frame)
    # What drift triggers compare new rows with (both started in train_model).
    assert state.reference is not None and state.fingerprint is not None
    reference, data_fingerprint = state.reference.result(), state.fingerprint.result()
    assert state.candidate_version is not None and state.trainer is not None
    version, stop = state.candidate_version, lambda: state.interrupt("evaluate")
    try:  # on disk (or in the store) before the version exists
        artifact = state.trainer.call(fitting.stored, (), stop)
    except processes.ProcessLost as exc:
        raise Failed(f"Storing the model failed: {exc}") from exc
    with unit_of_work(env.factory) as session:
        registry.register(
            session=session,
            pipeline_id=state.pipeline_id,
            version=version,
            run_id=state.run_id,
            artifact=artifact,
            facts={
                "estimator": state.spec.model.estimator,
                "metrics": state.metrics,
                "params": state.trained.params,
                "data_fingerprint": dict(data_fingerprint),
                "features": features,
                "reference": reference,
            },
        )
        run = session.get(Run, state.run_id)
        if run is None:
            raise Failed(f"Run {state.run_id} disappeared while it was being evaluated")
        run.metrics = state.metrics
        run.model_version = version
    state.version, state.sha256 = version, artifact.sha256
