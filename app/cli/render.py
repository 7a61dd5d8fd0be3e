"""How the CLI shows things: status words, UTC times, tables, run records and watch lines."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

Json = dict[str, Any]

STATUS_WORDS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "rejected": "Rejected",
    "awaiting_approval": "Awaiting approval",
    "cancelled": "Cancelled",
    "skipped": "Skipped",
    "paused": "Paused",
    "never_run": "Never run",
}
STATUS_STYLES = {
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "rejected": "yellow",
    "awaiting_approval": "magenta",
    "cancelled": "dim",
    "skipped": "dim",
    "pending": "dim",
}
FINAL_STATUSES = frozenset(
    {"completed", "failed", "rejected", "awaiting_approval", "cancelled", "skipped"}
)
# A watched run that ends in one of these is a success (exit 0).
GOOD_STATUSES = frozenset({"completed", "awaiting_approval"})


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="text (tables and lines) or json (the API's JSON)"),
]


class ListFormat(StrEnum):
    text = "text"
    wide = "wide"
    json = "json"


ListOutputOption = Annotated[
    ListFormat,
    typer.Option("--output", "-o", help="text, wide (every column) or json (the API's JSON)"),
]


def console() -> Console:
    """Standard output; piped output gets 100 columns rather than rich's default of 80."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=100 if piped else None, highlight=False)


UNLIMITED = 100_000


def print_unbroken(table: Table) -> None:
    """Print `table` at its natural width, however narrow the terminal: no cell is wrapped
    or cut (a terminal narrower than the table wraps the line itself, as with kubectl)."""
    Console(width=UNLIMITED, highlight=False).print(table)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def print_page(
    page: Json,
    output: OutputFormat,
    table: Callable[[list[Json]], Table],
    *,
    empty: str,
    noun: str | None = None,
    unbroken: bool = False,
) -> None:
    """A page of a listing: as JSON, as a table (and which rows of how many), or `empty`."""
    if output is OutputFormat.json:
        print_json(page)
        return
    if not page["items"]:
        typer.echo(empty)
        return
    if unbroken:
        print_unbroken(table(page["items"]))
    else:
        console().print(table(page["items"]))
    shown = len(page["items"])
    if noun is not None and (page["offset"] or shown < page["total"]):
        first = page["offset"] + 1
        typer.echo(f"{noun.capitalize()} {first}-{first + shown - 1} of {page['total']}")


def status_word(status: str) -> str:
    """`awaiting_approval` -> `Awaiting approval`."""
    return STATUS_WORDS.get(status, status.replace("_", " ").capitalize())


def styled_status(status: str) -> Text:
    return Text(status_word(status), style=STATUS_STYLES.get(status, ""))


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime (naive ones are taken to be UTC)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_time(value: str | None) -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC, or `-`."""
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def format_duration(start: str | None, end: str | None) -> str:
    """From start to end (or to now, while still going); `-` if it has not started."""
    begun = parse_time(start)
    if begun is None:
        return "-"
    seconds = max(((parse_time(end) or datetime.now(UTC)) - begun).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def short_class(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def describe_source(source: Json) -> str:
    kind = str(source.get("kind", "?"))
    detail = source.get("path") or source.get("dataset") or ""
    return f"{kind} {detail}".strip()


def describe_triggers(triggers: list[Json]) -> str:
    return ", ".join(str(t.get("kind")) for t in triggers) or "manual only"


def pipelines_table(items: list[Json], *, wide: bool = False) -> Table:
    """Name, state, model and triggers; `wide` adds the source and when it last changed."""
    columns = ["Name", "State", "Source", "Model", "Triggers", "Updated"]
    table = _table(*(c for c in columns if wide or c not in ("Source", "Updated")))
    # A name is what people copy into the next command: no cell ever wraps (print_unbroken
    # prints wider than the terminal instead).
    for column in table.columns:
        column.no_wrap = True
    for item in items:
        spec = item["spec"]
        source = [describe_source(spec["source"])] if wide else []
        updated = [format_time(item["updated_at"])] if wide else []
        if item.get("archived_at"):
            state = Text("archived", style="dim")
        else:
            state = Text("paused", style="yellow") if item["paused"] else Text("active")
        table.add_row(
            item.get("ref") or item["name"],
            state,
            *source,
            short_class(spec["model"]["estimator"]),
            describe_triggers(spec.get("triggers") or []),
            *updated,
        )
    return table


def wide_pipelines_table(items: list[Json]) -> Table:
    return pipelines_table(items, wide=True)


def score(metrics: Json) -> str:
    """`accuracy 0.917` from a run's or version's metrics, or `-`."""
    value = metrics.get("candidate")
    if not isinstance(value, int | float):
        return "-"
    return f"{metrics.get('metric', 'score')} {value:.3f}"


def version_label(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def runs_table(items: list[Json]) -> Table:
    table = _table("Run", "Status", "Trigger", "Started", "Took", "Model", "Score / error")
    for run in items:
        table.add_row(
            str(run["id"]),
            styled_status(run["status"]),
            run["trigger"]["reason"],
            format_time(run["started_at"]),
            format_duration(run["started_at"], run["finished_at"]) if run["finished_at"] else "-",
            version_label(run["model_version"]),
            run["error"] or score(run["metrics"]),
        )
    return table


def models_table(items: list[Json]) -> Table:
    table = _table("Version", "Stage", "Score", "Estimator", "Run", "Created")
    stage_styles = {"production": "green bold", "archived": "dim"}
    for model in items:
        table.add_row(
            version_label(model["version"]),
            Text(model["stage"], style=stage_styles.get(model["stage"], "")),
            score(model["metrics"]),
            short_class(model["estimator"]),
            "-" if model["run_id"] is None else str(model["run_id"]),
            format_time(model["created_at"]),
        )
    return table


def keys_table(items: list[Json]) -> Table:
    table = _table("Id", "Name", "Role", "Prefix", "Created", "Last used", "State")
    for key in items:
        table.add_row(
            str(key["id"]),
            key["name"],
            key["role"],
            key["prefix"],
            format_time(key["created_at"])[:10],  # the day is enough; the table fits 100 columns
            format_time(key["last_used_at"]),
            Text("revoked", style="red") if key["revoked_at"] else "active",
        )
    return table


def steps_table(run: Json) -> Table:
    table = _table("Step", "Status", "Took", "Detail")
    for step in run["steps"]:
        table.add_row(
            step["name"],
            Text(step["status"], style=STATUS_STYLES.get(step["status"], "")),
            format_duration(step["started_at"], step["finished_at"]),
            step["detail"] or "",
        )
    return table


def run_header(run: Json) -> Text:
    header = Text(f"Run {run['id']} of {run['pipeline']}: ", style="bold")
    return header.append_text(styled_status(run["status"]))


def run_record(run: Json) -> RenderableType:
    """`run show`: the run's facts, one per line, then its steps."""
    attempt = str(run["attempt"])
    if run.get("retry_of"):
        attempt += f" (retry of run {run['retry_of']})"
    finished = format_time(run["finished_at"])
    if run["finished_at"]:
        finished += f" (took {format_duration(run['started_at'], run['finished_at'])})"
    lines = [
        f"Trigger:  {run['trigger']['reason']}",
        f"Attempt:  {attempt}",
        f"Actor:    {run['actor']}",
        f"Worker:   {run.get('worker') or '-'}",
        f"Created:  {format_time(run['created_at'])}",
        f"Started:  {format_time(run['started_at'])}",
        f"Finished: {finished}",
        f"Model:    {version_label(run['model_version'])}  {score(run['metrics'])}",
    ]
    if run["error"]:
        lines.append(f"Error:    {run['error']}")
    return Group(run_header(run), Text("\n".join(lines)), Text(""), steps_table(run))


def step_line(step: Json) -> str:
    """`train: completed (LogisticRegression fitted on 455 rows in 0.03 s)`."""
    detail = f" ({step['detail']})" if step["detail"] else ""
    return f"{step['name']}: {step['status']}{detail}"


def run_outcome(run: Json) -> list[str]:
    """`Run 7 completed`, and the error if it has one."""
    lines = [f"Run {run['id']} {status_word(run['status']).lower()}"]
    if run["error"]:
        lines.append(f"Error: {run['error']}")
    return lines
