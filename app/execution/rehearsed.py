"""Preloaded by the forkserver (app.execution.processes.PRELOAD): importing this module
rehearses a run's ML work once, so that every training process forked from the server starts
with what that work imports and caches on first use (app.execution.rehearsal)."""

from app.execution.rehearsal import rehearse

rehearse()
