"""Housekeeping every process that executes or fires runs schedules on its clock."""

from __future__ import annotations

from app.execution import recovery
from app.execution.env import WorkerEnv
from app.scheduler.clock import Clock


def schedule_recovery(clock: Clock, env: WorkerEnv) -> None:
    """Heartbeat this process's runs, settle runs whose owner died, resend lost queued runs."""
    settings = env.settings
    clock.every(settings.heartbeat_s, "heartbeat", lambda: recovery.heartbeat(env))
    # Often: a dead owner on this host is seen at once, one on another host after the lease.
    reap_every = min(settings.lease_s / 2, settings.reconcile_s)
    clock.every(reap_every, "reap-lost-runs", lambda: recovery.reap_lost(env))
    resend_after = settings.lease_s * recovery.RESEND_LEASES
    clock.every(
        resend_after,
        "resend-queued-runs",
        lambda: recovery.resubmit_queued(env, older_than_s=resend_after),
    )
