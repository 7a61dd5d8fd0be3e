"""The pipeline spec: one schema for YAML and JSON; its field names are the public contract."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.untrusted import HTTP_URL_WITH_HOST, IDENTIFIER
from app.spec.cron import parse_cron

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")  # whole string: use fullmatch
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "precision", "recall")
REGRESSION_METRICS = ("r2", "rmse", "mae")
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
SKLEARN_DATASETS = ("iris", "wine", "breast_cancer", "diabetes", "digits")
MAX_TRIGGERS = 50
# Bounds that keep every value usable downstream: durations fit a timedelta and a schedule
# advances; counts stay far inside a 64-bit integer.
MAX_SECONDS = 10 * 366 * 86400
MAX_ROWS = 10**12
MAX_NAME = 256
# A homoglyph or an invisible character would silently start a series no trigger reads.
METRIC_NAME = IDENTIFIER
# RFC 9110 field names, and values without CR/LF or other control characters.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,8192}")
MAX_HEADERS = 50
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Rows = Annotated[int, Field(ge=1, le=MAX_ROWS)]
ColumnName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class SpecModel(BaseModel):
    """Base of every spec section: unknown fields are refused, values are not coerced."""

    # allow_inf_nan=False: NaN and Infinity are not JSON, and no threshold or duration means
    # anything as one.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Window(SpecModel):
    last_rows: int | None = Field(default=None, gt=0, le=MAX_ROWS)
    last_days: float | None = Field(default=None, gt=0, le=MAX_SECONDS / 86400)
    column: ColumnName | None = Field(
        default=None,
        description="Timestamp column for last_days (ingested data uses its arrival time).",
    )

    @model_validator(mode="after")
    def _one_bound(self) -> Window:
        if (self.last_rows is None) == (self.last_days is None):
            raise ValueError("set exactly one of last_rows or last_days")
        return self


class CsvSource(SpecModel):
    kind: Literal["csv"]
    path: str = Field(min_length=1, max_length=2048, description="Local path, http(s) or s3:// URL")
    window: Window | None = None


class ParquetSource(SpecModel):
    kind: Literal["parquet"]
    path: str = Field(min_length=1, max_length=2048, description="Local path, http(s) or s3:// URL")
    window: Window | None = None


class SqlSource(SpecModel):
    kind: Literal["sql"]
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="SQLAlchemy database URL; must match MLOPS_SQL_URL_ALLOW",
    )
    connection: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Or: the name of a connection configured in MLOPS_SQL_CONNECTIONS",
    )
    query: str = Field(min_length=1, max_length=100_000, description="One SELECT, run read-only")
    window: Window | None = None

    @model_validator(mode="after")
    def _one_database(self) -> SqlSource:
        if (self.url is None) == (self.connection is None):
            raise ValueError("set exactly one of url or connection")
        return self


class SklearnSource(SpecModel):
    kind: Literal["sklearn"]
    dataset: Literal["iris", "wine", "breast_cancer", "diabetes", "digits"]
    window: Window | None = None


class IngestedSource(SpecModel):
    kind: Literal["ingested"]
    window: Window | None = None


Source = Annotated[
    CsvSource | ParquetSource | SqlSource | SklearnSource | IngestedSource,
    Field(discriminator="kind"),
]


class ModelSpec(SpecModel):
    estimator: str = Field(
        max_length=200, description="Allow-listed class path, e.g. sklearn.linear_model.Ridge"
    )
    params: dict[str, object] = Field(default_factory=dict)


class Validation(SpecModel):
    min_rows: int = Field(default=1, ge=1, le=MAX_ROWS)
    max_null_fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    required_columns: list[ColumnName] = Field(default_factory=list, max_length=10_000)


class Evaluation(SpecModel):
    metric: str = Field(
        default="accuracy",
        json_schema_extra={"enum": [*CLASSIFICATION_METRICS, *REGRESSION_METRICS]},
    )
    holdout_fraction: float = Field(default=0.2, gt=0.0, le=0.9)
    min_score: float | None = None
    min_improvement: float = 0.0
    min_skill: float | None = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="Share of the gap between guessing (the best no-skill model) and a perfect "
        "score that the candidate must close on the holdout; null turns the check off",
    )
    on_unscorable_production: Literal["reject", "approve", "promote"] = Field(
        default="reject",
        description="When production exists but cannot be scored on the holdout: reject the "
        "run, end it awaiting_approval, or promote without a comparison (written in the ledger)",
    )

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
            known = ", ".join(CLASSIFICATION_METRICS + REGRESSION_METRICS)
            raise ValueError(f"unknown metric {value!r}; expected one of {known}")
        return value


class BuiltinTarget(SpecModel):
    # `kind` picks the target type, so a target must say it ({} is refused), although a
    # deployment without a target gets the builtin one.
    model_config = ConfigDict(json_schema_extra={"required": ["kind"]})

    kind: Literal["builtin"] = "builtin"


class WebhookTarget(SpecModel):
    kind: Literal["webhook"]
    url: str = Field(
        pattern=HTTP_URL_WITH_HOST,
        max_length=2048,
        description="http(s) URL that receives the version",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        json_schema_extra={
            "propertyNames": {"pattern": f"^{HEADER_NAME.pattern}$"},
            "additionalProperties": {"type": "string", "pattern": f"^{HEADER_VALUE.pattern}$"},
        },
        description="Sent with the POST; values are secrets, shown masked as '***' "
        "(send '***' back to keep a stored value)",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _has_host(cls, value: str) -> str:
        try:
            host = urlsplit(value).hostname
        except ValueError as exc:
            raise ValueError(f"is not a valid URL: {exc}") from None
        if not host:
            raise ValueError("is not a valid URL: it names no host")
        return value

    @field_validator("headers")
    @classmethod
    def _http_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not a valid HTTP header name")
            if not HEADER_VALUE.fullmatch(text):
                raise ValueError(f"the value of {name} has characters not allowed in a header")
        return value


DeployTarget = Annotated[BuiltinTarget | WebhookTarget, Field(discriminator="kind")]


class Deployment(SpecModel):
    mode: Literal["auto", "manual"] = "auto"
    target: DeployTarget = Field(default_factory=BuiltinTarget)


class CronTrigger(SpecModel):
    kind: Literal["cron"]
    schedule: str = Field(
        min_length=1, max_length=200, description="crontab(5): minute hour day month weekday"
    )
    timezone: str = Field(
        default="UTC", max_length=64, description="IANA time zone, e.g. Europe/Paris"
    )

    @field_validator("schedule")
    @classmethod
    def _crontab(cls, value: str) -> str:
        parse_cron(value)  # CronError names the field and the allowed range
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class IntervalTrigger(SpecModel):
    kind: Literal["interval"]
    every_s: float = Field(ge=0.1, le=MAX_SECONDS)


class MetricTrigger(SpecModel):
    kind: Literal["metric"]
    metric: str = Field(pattern=METRIC_NAME, description="A name posted to /metrics")
    operator: Literal["<", "<=", ">", ">="]
    threshold: float
    aggregate: Literal["mean", "min", "max", "last"] = "mean"
    window: int = Field(default=50, ge=1, le=100_000, description="last N observations")
    window_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="or: observations of the last window_s seconds",
    )
    min_observations: int = Field(default=1, ge=1, le=100_000)
    cooldown_s: Seconds = 0


class NewDataTrigger(SpecModel):
    kind: Literal["new_data"]
    min_rows: Rows


class DriftTrigger(SpecModel):
    kind: Literal["drift"]
    method: Literal["psi", "ks"] = "psi"
    threshold: float = Field(gt=0)
    min_rows: Rows = 500
    cooldown_s: Seconds = 0


Trigger = Annotated[
    CronTrigger | IntervalTrigger | MetricTrigger | NewDataTrigger | DriftTrigger,
    Field(discriminator="kind"),
]


class Retries(SpecModel):
    max_attempts: int = Field(default=1, ge=1, le=20)
    backoff_s: Seconds = 60


class PipelineSpec(SpecModel):
    """A retraining pipeline: where data comes from, what to train, and when it may ship."""

    # The validators below say why a value is refused; the schema publishes the same rules.
    name: str = Field(
        description="Slug: 1-64 lowercase letters, digits or '-', starting and ending with a "
        "letter or digit",
        json_schema_extra={"pattern": f"^{SLUG.pattern}$", "minLength": 1, "maxLength": 64},
    )
    description: str = Field(default="", max_length=2000)
    source: Source
    target: ColumnName
    features: list[ColumnName] | None = Field(
        default=None,
        max_length=10_000,
        description="Columns to train on: at least one, each once; omitted: all but the target",
        json_schema_extra={"minItems": 1, "uniqueItems": True},
    )
    model: ModelSpec
    validation: Validation = Field(default_factory=Validation)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    deployment: Deployment = Field(default_factory=Deployment)
    triggers: list[Trigger] = Field(default_factory=list, max_length=MAX_TRIGGERS)
    concurrency: Literal["skip", "queue"] = "skip"
    misfire: Literal["run_once", "skip"] = Field(
        default="run_once",
        description="Ticks missed while the service was down: one coalesced run, or none",
    )
    misfire_grace_s: float = Field(
        default=3600,
        ge=0,
        le=MAX_SECONDS,
        description="run_once only fires if the newest missed tick is this recent",
    )
    max_runs_per_day: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Retrain budget: automatic fires in any 24 h window",
    )
    retries: Retries = Field(default_factory=Retries)
    timeout_s: float = Field(default=3600, gt=0, le=MAX_SECONDS)
    queue: str = Field(
        default="default",
        description="With the celery executor: the workers listening on this queue run it "
        "(a slug, like `name`)",
        json_schema_extra={"pattern": f"^{SLUG.pattern}$", "minLength": 1, "maxLength": 64},
    )

    @field_validator("name", "queue")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.fullmatch(value):
            raise ValueError(
                "must be a slug: 1-64 lowercase letters, digits or '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("features")
    @classmethod
    def _features_nonempty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must list at least one column, or be omitted to use all columns")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("lists a column more than once")
        return value

    @property
    def lower_is_better(self) -> bool:
        return self.evaluation.metric in LOWER_IS_BETTER
