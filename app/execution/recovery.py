"""Nothing is left hanging: runs whose worker died are failed (or retried), and queued runs
that no worker picked up are handed to one.

Responsible for: the start-up sweep (runs of dead processes on this host end at once, with
"interrupted by restart"), the periodic lease check (runs whose owner is a dead process on
this host, or stopped heartbeating on any host, end with "worker lost"), and the heartbeat of
this process's own runs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.db import after_commit, unit_of_work
from app.core.time import utcnow
from app.execution.env import WorkerEnv
from app.pipelines.models import Pipeline
from app.pipelines.service import stored_spec_or_none
from app.runs import transitions as t
from app.runs.models import Run
from app.runs.service import schedule_retry

log = logging.getLogger(__name__)
# Queued runs older than this many leases are handed to the executor again: their hand-over
# was lost (a process died between insert and submit, a broker was down). A second delivery
# is harmless, the claim decides.
RESEND_LEASES = 3


# The owner ids this process made: one per service or worker it runs (an embedding
# application, the tests, may run several). Another owner with our pid is a previous process.
_OWNED_HERE: set[str] = set()


def owner_id() -> str:
    """Identifies this process as a run owner: host, pid, and a start nonce."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
    _OWNED_HERE.add(owner)
    return owner


def process_name() -> str:
    """`<hostname>:<pid>`: how a run names the `mlops serve` process that executed it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat(env: WorkerEnv) -> None:
    """Refresh the heartbeat of every run this process is executing."""
    with unit_of_work(env.factory) as session:
        session.execute(
            update(Run)
            .where(Run.owner == env.owner, Run.status == t.RUNNING)
            .values(heartbeat_at=utcnow())
        )


def recover_at_start(env: WorkerEnv) -> None:
    """End the runs of dead processes on this host; hand unclaimed queued runs to a worker."""
    with unit_of_work(env.factory) as session:
        running = session.scalars(
            select(Run).where(Run.status == t.RUNNING).with_for_update(skip_locked=True)
        ).all()
        dead = [run for run in running if _dead_here(run.owner)]
        _end_lost(session, env, dead, "Interrupted by restart: the service stopped during the run")
    resubmit_queued(env, older_than_s=0)


def interrupt_owned(env: WorkerEnv) -> None:
    """At shutdown, after the grace period: end this process's runs that are still going."""
    with unit_of_work(env.factory) as session:
        # Locked first, in id order: a run whose worker is writing its end or a step right
        # now is waited for (and is then skipped if it ended), instead of written from both
        # sides at once (a shutdown deadlocked with a run's worker on PostgreSQL, once in CI).
        running = session.scalars(
            select(Run)
            .where(Run.status == t.RUNNING, Run.owner == env.owner)
            .order_by(Run.id)
            .with_for_update()
        ).all()
        reason = "Interrupted by shutdown: the service stopped before the run ended"
        _end_lost(session, env, running, reason)


def reap_lost(env: WorkerEnv) -> None:
    """End runs whose owner is a dead process on this host, or stopped heartbeating for
    longer than the lease (on any host)."""
    cutoff = utcnow() - timedelta(seconds=env.settings.lease_s)
    with unit_of_work(env.factory) as session:
        # Locked, skipping rows another process is settling: two processes that see the same
        # dead owner at once must not both fail its run (and schedule two retries).
        running = session.scalars(
            select(Run)
            .where(Run.status == t.RUNNING, Run.owner != env.owner)
            .with_for_update(skip_locked=True)
        ).all()
        dead = [run for run in running if _dead_here(run.owner)]
        _end_lost(session, env, dead, "Worker lost: its process died")
        stale = [
            run
            for run in running
            if run not in dead and (run.heartbeat_at is None or run.heartbeat_at < cutoff)
        ]
        _end_lost(session, env, stale, "Worker lost: its process stopped heartbeating")


def resubmit_queued(env: WorkerEnv, *, older_than_s: float) -> None:
    """Queued runs holding the active slot that no worker took (their process died)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with unit_of_work(env.factory) as session:
        rows = session.execute(
            select(Run.id, Run.not_before).where(
                Run.status == t.QUEUED, Run.slot == "active", Run.created_at <= cutoff
            )
        ).all()
    for run_id, not_before in rows:
        env.executor.submit(run_id, not_before=not_before)


def _end_lost(session: Session, env: WorkerEnv, runs: Iterable[Run], reason: str) -> None:
    for run in runs:
        log.warning("run %s (owner %s): %s", run.id, run.owner, reason)
        for step in run.steps:
            if step.status in ("pending", "running"):
                step.status = "failed" if step.status == "running" else "skipped"
                step.finished_at = utcnow()
        promoted = t.transition(session, run, t.FAILED, error=reason)
        pipeline = session.get(Pipeline, run.pipeline_id)
        assert pipeline is not None
        # A pipeline whose stored spec no longer loads gets no retry: it would fail to start.
        spec = stored_spec_or_none(pipeline)
        retry = schedule_retry(session, run, spec) if spec is not None else None
        if promoted is not None:
            _submit_after_commit(session, env, promoted)
        if retry is not None and retry.slot == "active":
            _submit_after_commit(session, env, retry.id)


def _submit_after_commit(session: Session, env: WorkerEnv, run_id: int) -> None:
    after_commit(session, lambda: env.executor.submit(run_id))


def _dead_here(owner: str | None) -> bool:
    if owner is None:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        # A previous process with our pid (a container restart, say), or one of ours.
        return owner not in _OWNED_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited but whose parent has not collected it yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux): kill(pid, 0) said it lives
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
