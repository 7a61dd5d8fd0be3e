"""Executes one run: claims it, walks its steps, and records how it ended.

Responsible for: the run's lease (owner and heartbeat), stopping at step boundaries when the
run is cancelled, times out or its lease was taken, fencing the promotion so a worker that
lost its run never promotes, and scheduling a retry when a failed run has attempts left.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.orm import Session, lazyload

from app.core import heap, logs
from app.core.db import after_commit, read_only_unit, unit_of_work
from app.core.errors import DomainError, StoredSpecInvalid
from app.core.time import utcnow
from app.execution import compute, processes, rehearsal
from app.execution.env import WorkerEnv
from app.execution.outcomes import AwaitApproval, Rejected, StepOutcome, Stopped
from app.execution.steps import STEPS, RunState, estimator_kind
from app.pipelines import service as pipelines
from app.pipelines.models import Pipeline
from app.registry import service as registry
from app.runs import service as runs
from app.runs import transitions as t
from app.runs.models import Run, RunStep
from app.spec.estimators import EstimatorError
from app.training.errors import EvaluationError, TrainingError

log = logging.getLogger(__name__)
# During a fit the run's row is read at most this often (for a cancel or a lost lease).
INTERRUPT_CHECK_S = 1.0
# How long a start may spend loading production models before it reports ready.
PRELOAD_S = 10.0
# What a run's data takes in each allocator arena of the service's compute threads, per cell
# (row x column). Read, checked, hashed and split, 400,000 x 10 cells took ~120 MB of fresh
# pages in a first run (~46,000 faults); 16 bytes a cell, 61 MB in each of the two arenas,
# left ~12,000 faults (the next run's ~14,000) for ~80 MB more resident memory after a run;
# 32 bytes, ~16,000 faults for ~170 MB more.
BYTES_PER_CELL = 16
BYTES_PER_VALUE = 8  # a numeric cell, as the data goes to a training process
# The compute threads that prepare_memory readies, and the least worth readying.
MEMORY_THREADS, MIN_RESERVE = 4, 8 << 20
EXPECTED = (StepOutcome, DomainError, TrainingError, EvaluationError)


@dataclass(frozen=True)
class Ending:
    status: str
    error: str | None
    step_status: str
    detail: str | None


def warm_up() -> None:
    """Import what scoring a fitted model takes, rehearse a run's ML work and have a training
    process ready, which rehearses a run's calls to it (as will every training process started
    later), so that the first run after a start waits for none of it (this module's own
    imports, the training stack, are done by then too), nor any later run for a full garbage
    collection over all of it (app.core.heap)."""
    for module in processes.WARM_MODULES:  # what loading production's artifact takes
        importlib.import_module(module)
    rehearsal.rehearse()
    processes.warm_up(rehearsal.rehearse_fitting)
    heap.settle()  # last: what start-up loaded is never walked by a full collection again


def preload_production(env: WorkerEnv) -> None:
    """Load production's models while the process starts, the latest promoted first, for at
    most PRELOAD_S: a run's evaluate scores production on its holdout, and the first run after
    a start read its artifact from the store (~110 ms of CPU for a 20-tree forest, beside the
    fit); /predict serves from the same cache."""
    with read_only_unit(env.factory) as session:
        refs = registry.production_refs(session=session)
    loaded = env.models.preload(refs, PRELOAD_S)
    if refs:
        log.info("preloaded %d of %d production models", loaded, len(refs))


def prepare(env: WorkerEnv) -> None:
    """What a start does once the training stack is warm (warm_up) and the database is there:
    production's models loaded, and memory ready for the largest pipeline's data."""
    preload_production(env)
    prepare_memory(env)


def prepare_memory(env: WorkerEnv) -> None:
    """Ready memory for the largest live pipeline's latest training data, at most
    MLOPS_WARM_MEMORY_MB of each kind, so that the first run after a start reads, checks and
    sends its data on pages already in use, as every later run does:

    - the training processes' shared input files, for the data's values (app.execution.transfer);
    - in each of the compute threads later runs' work will most likely take, as much memory as
      the data took there, which the allocator then keeps (app.core.heap).

    Nothing for small data, nor before a pipeline's first version."""
    with read_only_unit(env.factory) as session:
        cells = registry.largest_training_data(session=session)
    cap = env.settings.warm_memory_mb << 20
    processes.expect_inputs(min(cells * BYTES_PER_VALUE, cap))
    size = min(cells * BYTES_PER_CELL, cap)
    if size < MIN_RESERVE or not heap.keep_reserve(size):
        return
    start = time.perf_counter()
    compute.on_threads(MEMORY_THREADS, partial(heap.fault_in, size))
    log.info(
        "memory ready for runs' data: %d MB kept in each allocator arena of the compute threads, "
        "for the largest pipeline's %d cells (%.0f ms)",
        size >> 20,
        cells,
        (time.perf_counter() - start) * 1000,
    )


def execute(run_id: int, env: WorkerEnv) -> None:
    """Run `run_id` to its end; never raises, never leaves it running."""
    # Every log line of the run carries its id and pipeline (MLOPS_LOG_FORMAT=json fields).
    with logs.bound(run_id=run_id):
        state = _claim(run_id, env)
        if state is None:
            return
        with logs.bound(pipeline=state.pipeline_name):
            _walk(state, env)


def _walk(state: RunState, env: WorkerEnv) -> None:
    """Take the run through its steps, then record how it ended."""
    log.info("run %s started", state.run_id)
    step_name = STEPS[0][0]
    finished: tuple[str, str] | None = None
    with state.held:  # the run's training process, given back once the run has ended
        try:
            for step_name, step in STEPS:
                _advance(state, env, finished, step_name)
                finished = (step_name, step(state, env))
            ending = Ending(t.COMPLETED, None, "completed", None)
        except EXPECTED as exc:
            ending = _ending_for(exc)
        except Exception as exc:
            log.exception("run %s: unexpected error in step %s", state.run_id, step_name)
            message = f"Unexpected error in step {step_name}: {type(exc).__name__}: {exc}"
            ending = Ending(t.FAILED, message, "failed", message)
        _finish(state, env, step_name, ending)
    detail = f" in {step_name}: {ending.error}" if ending.error else ""
    log.info("run %s ended %s%s", state.run_id, ending.status, detail)


def _ending_for(exc: Exception) -> Ending:
    reason = str(exc)
    if isinstance(exc, AwaitApproval):
        return Ending(t.AWAITING_APPROVAL, None, "completed", reason)
    if isinstance(exc, Rejected):
        return Ending(t.REJECTED, reason, "rejected", reason)
    if isinstance(exc, Stopped):
        step_status = "cancelled" if exc.status == t.CANCELLED else "failed"
        return Ending(exc.status, reason, step_status, reason)
    return Ending(t.FAILED, reason, "failed", reason)


def _claim(run_id: int, env: WorkerEnv) -> RunState | None:
    with unit_of_work(env.factory) as session:
        found = _claimable(session, run_id)
        if found is None:
            return None  # already taken, cancelled, or still waiting for the slot
        run, name, spec_json = found
        if run.not_before is not None and run.not_before > utcnow():
            not_before = run.not_before
            after_commit(session, lambda: env.executor.submit(run_id, not_before=not_before))
            return None
        try:
            spec = pipelines.parse_stored(name, spec_json)
            kind = estimator_kind(spec, env)
        except (StoredSpecInvalid, EstimatorError) as exc:
            _fail_unstartable(session, env, run, f"Cannot start: {exc}")
            return None
        # Owner and lease first, so the transition's flush writes them in the same UPDATE.
        run.owner, run.heartbeat_at, run.worker = env.owner, utcnow(), env.worker
        t.transition(session, run, t.RUNNING)
        pipeline_id, started_at = run.pipeline_id, run.started_at
    assert started_at is not None
    return RunState(
        run_id=run_id,
        pipeline_id=pipeline_id,
        pipeline_name=name,
        spec=spec,
        kind=kind,
        finalize=_fence(run_id, env),
        interrupt=_interrupt(run_id, env, spec.timeout_s, started_at),
    )


def _fail_unstartable(session: Session, env: WorkerEnv, run: Run, reason: str) -> None:
    """A run whose pipeline no longer loads (its stored spec, or its estimator under today's
    allow-list) fails at once with the reason, instead of waiting in the queue for ever."""
    log.warning("run %s: %s", run.id, reason)
    _skip_pending(run)
    _after_settle(session, env, t.transition(session, run, t.FAILED, error=reason))


def _claimable(session: Session, run_id: int) -> tuple[Run, str, dict[str, Any]] | None:
    """The queued run holding its pipeline's active slot, locked, with the pipeline's name
    and spec: one statement, as the run's start waits on it (its steps are not needed)."""
    row = session.execute(
        select(Run, Pipeline.name, Pipeline.spec)
        .join(Pipeline, Pipeline.id == Run.pipeline_id)
        .where(Run.id == run_id)
        .options(lazyload(Run.steps))
        .with_for_update(of=Run)
    ).one_or_none()
    if row is None or row.Run.status != t.QUEUED or row.Run.slot != "active":
        return None
    return row.Run, row.name, row.spec


def _owned_run(session: Session, run_id: int, env: WorkerEnv) -> Run:
    """The run, locked, if this worker still owns it; Stopped otherwise."""
    run = session.get(Run, run_id, with_for_update=True, options=[lazyload(Run.steps)])
    if not _owns(run, env):
        raise _lease_lost()
    assert run is not None
    return run


def _owns(run: Run | None, env: WorkerEnv) -> bool:
    return run is not None and run.status == t.RUNNING and run.owner == env.owner


def _lease_lost() -> Stopped:
    return Stopped(t.FAILED, "Worker lost its lease on the run; another process took over")


def _interrupt(
    run_id: int, env: WorkerEnv, timeout_s: float, started_at: datetime
) -> Callable[[str], Stopped | None]:
    """Why the run must stop in the middle of `step`: out of time (checked at every call),
    cancelled or its lease lost (the row is read at most every INTERRUPT_CHECK_S)."""
    read_at = time.monotonic()

    def interrupt(step: str) -> Stopped | None:
        nonlocal read_at
        late = _out_of_time(started_at, timeout_s, f"during step {step}")
        if late is not None or time.monotonic() - read_at < INTERRUPT_CHECK_S:
            return late
        read_at = time.monotonic()
        with read_only_unit(env.factory) as session:
            run = session.get(Run, run_id)
            if not _owns(run, env):
                return _lease_lost()
            assert run is not None
            return _stop_reason(run, timeout_s, f"during step {step}")

    return interrupt


def _advance(
    state: RunState, env: WorkerEnv, finished: tuple[str, str] | None, next_step: str
) -> None:
    """One transaction per step boundary: record the step that ended, renew the lease, and
    start the next step unless the run was cancelled or ran out of time."""
    with unit_of_work(env.factory) as session:
        run = _owned_run(session, state.run_id, env)
        now = run.heartbeat_at = utcnow()
        # The steps are written by statement, not loaded and flushed: a run's start and each of
        # its step boundaries wait on this transaction.
        if finished is not None:
            name, detail = finished
            _end_step(session, run.id, name, "completed", detail, now)
        stop = _stop_reason(run, state.spec.timeout_s, f"before step {next_step}")
        if stop is None:
            _set_step(session, run.id, next_step, status="running", started_at=now)
    if stop is not None:
        raise stop


def _end_step(
    session: Session, run_id: int, name: str, status: str, detail: str | None, now: datetime
) -> None:
    """Record how step `name` ended (a step that never started started now)."""
    started = func.coalesce(RunStep.started_at, literal(now, RunStep.started_at.type))
    _set_step(
        session, run_id, name, status=status, detail=detail, started_at=started, finished_at=now
    )


def _set_step(session: Session, run_id: int, name: str, **values: Any) -> None:
    """One UPDATE statement. A step this session has loaded (the run's end loads them all)
    takes the plain values and reloads the computed ones when next read ("fetch")."""
    session.execute(
        update(RunStep)
        .where(RunStep.run_id == run_id, RunStep.name == name)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )


def _stop_reason(run: Run, timeout_s: float, where: str) -> Stopped | None:
    """Cancelled or out of time; `where` is "before step X" or "during step X"."""
    if run.cancel_requested:
        return Stopped(t.CANCELLED, f"Cancelled {where}")
    assert run.started_at is not None
    return _out_of_time(run.started_at, timeout_s, where)


def _out_of_time(started_at: datetime, timeout_s: float, where: str) -> Stopped | None:
    elapsed = (utcnow() - started_at).total_seconds()
    if elapsed <= timeout_s:
        return None
    return Stopped(
        t.FAILED,
        f"Timed out: the run took {elapsed:.1f} s, over timeout_s {timeout_s:g} (stopped {where})",
    )


def _fence(run_id: int, env: WorkerEnv) -> Callable[[Session, str], None]:
    """Called inside the promotion's transaction: the run completes in the same commit."""

    def finalize(session: Session, detail: str) -> None:
        run = _owned_run(session, run_id, env)
        if run.cancel_requested:
            raise Stopped(t.CANCELLED, "Cancelled before the promotion")
        _end_step(session, run_id, "deploy", "completed", detail, utcnow())
        promoted = t.transition(session, run, t.COMPLETED)
        _after_settle(session, env, promoted)

    return finalize


def _finish(state: RunState, env: WorkerEnv, step_name: str, ending: Ending) -> None:
    with unit_of_work(env.factory) as session:
        run = session.get(Run, state.run_id, with_for_update=True)
        if run is None or run.owner != env.owner or run.status != t.RUNNING:
            return  # completed by the promotion's transaction, or reaped by another process
        if ending.status != t.COMPLETED or step_name != "deploy":
            _end_step(session, run.id, step_name, ending.step_status, ending.detail, utcnow())
        _skip_pending(run)
        promoted = t.transition(session, run, ending.status, error=ending.error)
        retry = runs.schedule_retry(session, run, state.spec) if ending.status == t.FAILED else None
        _after_settle(session, env, promoted, retry)


def _skip_pending(run: Run) -> None:
    """Steps the run never reached are recorded as skipped."""
    for step in run.steps:
        if step.status == "pending":
            step.status = "skipped"


def _after_settle(
    session: Session, env: WorkerEnv, promoted: int | None, retry: Run | None = None
) -> None:
    if promoted is not None:
        after_commit(session, lambda: env.executor.submit(promoted))
    if retry is not None and retry.slot == "active":
        retry_id, not_before = retry.id, retry.not_before
        after_commit(session, lambda: env.executor.submit(retry_id, not_before=not_before))
