"""The estimator allow-list: a spec names a class path; only allow-listed scikit-learn
estimators are ever reached, so a spec can never import a module or reach a callable.

Only the package an allow-list entry names is imported; the rest of the path is followed as
public attributes of it. A package exposes its public submodules that way (scikit-learn
imports them lazily), so `sklearn.ensemble.RandomForestClassifier` resolves, while a spec
naming `sklearn.conftest.X` or `sklearn.experimental.enable_iterative_imputer.X` imports
nothing: those modules are not attributes of their package until someone imports them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

EstimatorKind = Literal["classifier", "regressor"]
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
MAX_PATH_LENGTH = 200


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
            # Third-party validation of untrusted values: whatever it raises, the answer is
            # "these params are not usable", never an error escaping the spec parser.
            except Exception as exc:
                raise EstimatorError(f"invalid params for {self.path}: {exc}") from exc
        return estimator


def allowing_entry(path: str, allowed: Sequence[str]) -> str | None:
    """The allow-list entry that admits `path`: `pkg.` admits classes under the package,
    any other entry exactly one class path."""
    if len(path) > MAX_PATH_LENGTH or not _DOTTED.fullmatch(path):
        return None
    for entry in allowed:
        if path.startswith(entry) if entry.endswith(".") else path == entry:
            return entry
    return None


def is_allowed(path: str, allowed: Sequence[str]) -> bool:
    """True when the dotted path is admitted by one of the allow-list entries."""
    return allowing_entry(path, allowed) is not None


def resolve_estimator(path: str, allowed: Sequence[str]) -> ResolvedEstimator:
    """The allow-listed estimator class at `path`; refuse anything else before importing."""
    entry = allowing_entry(path, allowed)
    if entry is None:
        shown = ", ".join(e + ("*" if e.endswith(".") else "") for e in allowed)
        raise EstimatorError(
            f"{path[:MAX_PATH_LENGTH]!r} is not an allowed estimator (allowed: {shown})"
        )
    if any(part.startswith("_") for part in path.split(".")):
        raise EstimatorError(f"{path!r} is private; use the public class path")
    cls = _follow(path, entry)
    # scikit-learn is imported here, not with this module: the API and the scheduler start
    # without the training stack, which loads with the first spec or run that needs it.
    from sklearn.base import BaseEstimator

    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise EstimatorError(f"{path!r} is not a scikit-learn estimator class")
    return ResolvedEstimator(path=path, cls=cls, kind=_kind_of(path, cls))


def _follow(path: str, entry: str) -> object:
    """Import the entry's package, then walk the rest of `path` as public attributes."""
    root = entry[:-1] if entry.endswith(".") else entry.rpartition(".")[0]
    try:
        current: object = importlib.import_module(root)
    except ImportError as exc:
        raise EstimatorError(f"module {root!r} not found") from exc
    walked = root
    for name in path[len(root) + 1 :].split("."):
        if not isinstance(current, ModuleType):
            raise EstimatorError(f"{path!r} is not a class in a module ({walked} is not one)")
        try:
            current = getattr(current, name, None)
        # A package's lazy __getattr__ imports public submodules; a broken one is "not found".
        except ImportError:
            current = None
        if current is None:
            raise EstimatorError(f"{path!r} not found: {walked} has no public {name!r}")
        walked = f"{walked}.{name}"
    return current


def _kind_of(path: str, cls: type[BaseEstimator]) -> EstimatorKind:
    from sklearn.base import is_classifier, is_regressor

    try:
        probe = cls()
    except TypeError as exc:
        raise EstimatorError(f"{path!r} needs constructor arguments; not supported") from exc
    try:
        classifier, regressor = is_classifier(probe), is_regressor(probe)
    # A meta-estimator without its inner estimator can fail to say what it is, with any
    # error; the spec parser must answer 422, never let it escape.
    except Exception as exc:
        raise EstimatorError(f"{path!r} cannot be used without constructor arguments") from exc
    if classifier:
        return "classifier"
    if regressor:
        return "regressor"
    raise EstimatorError(f"{path!r} is neither a classifier nor a regressor")
