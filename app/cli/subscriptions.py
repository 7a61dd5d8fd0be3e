"""`mlops subscription create | list | deliveries`: outgoing event subscriptions (admin)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from app.cli import render
from app.cli.client import UrlOption, connect
from app.cli.render import OutputFormat, OutputOption

app = typer.Typer(
    help="Event subscriptions: create, list, deliveries (needs an admin key).",
    no_args_is_help=True,
)
Json = dict[str, Any]


class FormatChoice(StrEnum):
    standard = "standard"
    slack = "slack"


@app.command("create")
def create(
    target: Annotated[str, typer.Argument(help="The http(s) URL that receives the events")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help="An event type (repeatable); default: every one"),
    ] = None,
    pipeline: Annotated[
        list[str] | None,
        typer.Option("--pipeline", "-p", help="Only this pipeline's events (repeatable)"),
    ] = None,
    fmt: Annotated[
        FormatChoice, typer.Option("--format", help="standard (signed JSON) or slack")
    ] = FormatChoice.standard,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Subscribe a URL to events; its signing secret is printed this once only."""
    body: Json = {"url": target, "events": event or ["*"], "format": fmt.value}
    if pipeline:
        body["pipelines"] = pipeline
    with connect(url) as client:
        created = client.post("/subscriptions", body=body)
    if output is OutputFormat.json:
        render.print_json(created)
        return
    typer.echo(f"Subscription {created['id']} created: {', '.join(created['events'])} -> {target}")
    typer.echo(f"Secret: {created['secret']} (shown only this once; store it)")


@app.command("list")
def list_subscriptions(url: UrlOption = None, output: OutputOption = OutputFormat.text) -> None:
    """Subscriptions, newest first (never their secrets)."""
    with connect(url) as client:
        page = client.get("/subscriptions", params={"limit": 500})
    render.print_page(page, output, subscriptions_table, empty="No subscriptions")


@app.command("deliveries")
def deliveries(
    subscription_id: Annotated[int, typer.Argument(help="Subscription id", min=1)],
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """A subscription's delivery log: attempts, last status or error, next attempt."""
    with connect(url) as client:
        page = client.get(f"/subscriptions/{subscription_id}/deliveries", params={"limit": 100})
    render.print_page(page, output, deliveries_table, empty="No deliveries", noun="deliveries")


def subscriptions_table(items: list[Json]) -> Table:
    table = _table("Id", "URL", "Events", "Pipelines", "Format", "State")
    for row in items:
        table.add_row(
            str(row["id"]),
            row["url"],
            ", ".join(row["events"]),
            ", ".join(row["pipelines"] or ["all"]),
            row["format"],
            "enabled" if row["enabled"] else f"disabled: {row['disabled_reason']}",
        )
    return table


def deliveries_table(items: list[Json]) -> Table:
    table = _table("Id", "Event", "Pipeline", "Status", "Attempts", "Last answer", "Next attempt")
    for row in items:
        code = row["last_status_code"]
        table.add_row(
            str(row["id"]),
            row["type"],
            row["pipeline"],
            row["status"],
            str(row["attempts"]),
            str(code) if code is not None else (row["last_error"] or "-"),
            render.format_time(row["next_attempt_at"]) if row["next_attempt_at"] else "-",
        )
    return table


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table
