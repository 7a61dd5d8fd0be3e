"""The estimator allow-list: a spec names a class path; only allow-listed scikit-learn
estimators are ever imported, so a spec can never reach an arbitrary callable."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

EstimatorKind = Literal["classifier", "regressor"]
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class EstimatorError(ValueError):
    """The estimator path or its params cannot be used; the message says why."""


@dataclass(frozen=True)
class ResolvedEstimator:
    path: str
    cls: type[BaseEstimator]
    kind: EstimatorKind

    def build(self, params: dict[str, Any]) -> BaseEstimator:
        """Instantiate with params; raise EstimatorError on an unknown or invalid param."""
        try:
            estimator = self.cls(**params)
        except TypeError as exc:
            raise EstimatorError(f"invalid params for {self.path}: {exc}") from exc
        validate = getattr(estimator, "_validate_params", None)
        if callable(validate):
            try:
                validate()
            except (TypeError, ValueError) as exc:
                raise EstimatorError(f"invalid params for {self.path}: {exc}") from exc
        return estimator


def is_allowed(path: str, allowed_prefixes: Sequence[str]) -> bool:
    """True when the dotted path sits under one of the allow-listed prefixes."""
    return bool(_DOTTED.match(path)) and any(path.startswith(p) for p in allowed_prefixes)


def resolve_estimator(path: str, allowed_prefixes: Sequence[str]) -> ResolvedEstimator:
    """Import an allow-listed estimator class; refuse anything else before importing it."""
    if not is_allowed(path, allowed_prefixes):
        allowed = ", ".join(f"{p}*" for p in allowed_prefixes)
        raise EstimatorError(f"{path!r} is not an allowed estimator (allowed: {allowed})")
    module_name, _, class_name = path.rpartition(".")
    if class_name.startswith("_") or any(part.startswith("_") for part in module_name.split(".")):
        raise EstimatorError(f"{path!r} is private; use the public class path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorError(f"module {module_name!r} not found") from exc
    # scikit-learn is imported here, not with this module: the API and the scheduler start
    # without the training stack, which loads with the first spec or run that needs it.
    from sklearn.base import BaseEstimator

    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise EstimatorError(f"{path!r} is not a scikit-learn estimator class")
    return ResolvedEstimator(path=path, cls=cls, kind=_kind_of(path, cls))


def _kind_of(path: str, cls: type[BaseEstimator]) -> EstimatorKind:
    from sklearn.base import is_classifier, is_regressor

    try:
        probe = cls()
    except TypeError as exc:
        raise EstimatorError(f"{path!r} needs constructor arguments; not supported") from exc
    if is_classifier(probe):
        return "classifier"
    if is_regressor(probe):
        return "regressor"
    raise EstimatorError(f"{path!r} is neither a classifier nor a regressor")
