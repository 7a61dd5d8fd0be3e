"""Executing a run: claim, the five steps, training processes, leases and recovery."""
