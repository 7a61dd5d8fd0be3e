"""Preloaded by the forkserver (app.execution.processes.PRELOAD), last: importing this module
rehearses a run's ML work once, so that every training process forked from the server starts
with what that work imports and caches on first use (app.execution.rehearsal), then freezes
what the server holds by then (app.core.heap), so that no training process's full collection
walks it (and, as a bonus, collections do not copy the pages fork shares)."""

from app.core.heap import settle
from app.execution.rehearsal import rehearse

rehearse()
settle()
