"""Errors of the train and evaluate steps; their messages are shown to users as the run error."""

from __future__ import annotations


class TrainingError(Exception):
    """The estimator could not be built or fitted; the message starts "Training failed: "."""


class EvaluationError(Exception):
    """The metric cannot be computed for this model and data; the message says why."""
