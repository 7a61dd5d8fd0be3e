"""`mlops pipeline …`: apply a spec, list, status, trigger, history, pause and resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from app.cli import render
from app.cli.client import UrlOption, connect, fail, segment
from app.cli.render import OutputFormat, OutputOption
from app.cli.runs import watch

app = typer.Typer(help="Pipelines: apply specs, see status, trigger runs.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="Pipeline name")]
JSON_SUFFIXES = frozenset({".json"})
YAML_SUFFIXES = frozenset({".yaml", ".yml"})


@app.command("apply")
def apply(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Spec file, YAML or JSON ('-' reads stdin)")
    ],
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Create the pipeline in FILE, or replace it if it exists."""
    text = _read(file)
    is_json = _is_json(file, text)
    name = _spec_name(file, text, is_json=is_json)
    content_type = "application/json" if is_json else "application/yaml"
    with connect(url) as client:
        response = client.request(
            "PUT",
            f"/pipelines/{segment(name)}",
            content=text.encode(),
            headers={"Content-Type": content_type},
        )
        body = client.json(response)
    if output is OutputFormat.json:
        render.print_json(body)
    elif response.status_code == 201:
        typer.echo(f"Pipeline {name} created")
        if body.get("webhook_secret"):
            typer.echo(f"Webhook secret: {body['webhook_secret']} (shown only this once; store it)")
    else:
        # An older server sends no result header; it only knew "updated".
        result = response.headers.get("Mlops-Apply-Result", "updated")
        typer.echo(f"Pipeline {name} {'unchanged' if result == 'unchanged' else 'updated'}")


def _read(file: Path) -> str:
    if str(file) == "-":
        return sys.stdin.read()
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}", code=2)


def _is_json(file: Path, text: str) -> bool:
    suffix = file.suffix.lower()
    if suffix in JSON_SUFFIXES | YAML_SUFFIXES:
        return suffix in JSON_SUFFIXES
    return text.lstrip().startswith("{")


def _spec_name(file: Path, text: str, *, is_json: bool) -> str:
    """The spec's `name`, read locally because it goes in the URL."""
    try:
        document: Any = json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if is_json else "YAML"
        fail(f"{file} is not valid {kind}: {str(exc).splitlines()[0]}", code=2)
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name:
        fail(f"{file} has no pipeline name (the top-level 'name' field)", code=2)
    return name


@app.command("list")
def list_pipelines(
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many")] = 0,
    archived: Annotated[
        bool, typer.Option("--archived", help="Also list archived (deleted) pipelines")
    ] = False,
    url: UrlOption = None,
    output: render.ListOutputOption = render.ListFormat.text,
) -> None:
    """All pipelines, by name (`-o wide` adds the source and when each last changed)."""
    params = {"limit": limit, "offset": offset, "include_archived": archived}
    with connect(url) as client:
        page = client.get("/pipelines", params=params)
    empty = "No pipelines yet; create one with: mlops pipeline apply -f FILE"
    wide = output is render.ListFormat.wide
    table = render.wide_pipelines_table if wide else render.pipelines_table
    as_json = output is render.ListFormat.json
    fmt = OutputFormat.json if as_json else OutputFormat.text
    render.print_page(page, fmt, table, empty=empty, noun="pipelines", unbroken=True)


@app.command("status")
def status(name: Name, url: UrlOption = None, output: OutputOption = OutputFormat.text) -> None:
    """Status, and when the newest run started or why it failed."""
    with connect(url) as client:
        current = client.get(f"/pipelines/{segment(name)}/status")
    if output is OutputFormat.json:
        render.print_json(current)
        return
    typer.echo(f"Status: {render.status_word(current['status'])}")
    if current["error"]:
        typer.echo(f"Error: {current['error']}")
    elif current["last_run_at"]:
        typer.echo(f"Last run: {render.format_time(current['last_run_at'])}")


@app.command("trigger")
def trigger(
    name: Name,
    reason: Annotated[str | None, typer.Option(help="Why, in a few words")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat with the same key to get the same run")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Watch the run until it ends")] = False,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Start a run now; with --wait, follow it and exit 1 unless it succeeds."""
    body = {"reason": reason} if reason else None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with connect(url) as client:
        run = client.post(f"/pipelines/{segment(name)}/runs", body=body, headers=headers)
        if output is OutputFormat.text:
            word = render.status_word(run["status"]).lower()
            typer.echo(f"Run {run['id']} {word} ({run['trigger']['reason']})")
        if wait:
            watch(client, run["id"], output=output)
    if output is OutputFormat.json:
        render.print_json(run)


@app.command("history")
def history(
    name: Name,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many runs")] = 20,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Runs, newest first."""
    with connect(url) as client:
        page = client.get(f"/pipelines/{segment(name)}/runs", params={"limit": limit})
    empty = f"Pipeline {name} has no runs yet"
    render.print_page(page, output, render.runs_table, empty=empty, noun="runs")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Pipeline name, or NAME@ID of an archived one")],
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete its model artifacts (admin)")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Archive a pipeline: it never runs again, its history stays readable (NAME@ID)."""
    with connect(url) as client:
        client.delete(f"/pipelines/{segment(name)}", params={"purge": purge} if purge else None)
        if "@" in name:  # an archived pipeline: only its artifacts could go
            typer.echo(f"Pipeline {name}: its artifacts were purged")
            return
        page = client.get("/pipelines", params={"include_archived": True, "limit": 500})
    # The one just archived: the newest archived history of this name.
    refs = [p["ref"] for p in page["items"] if p["name"] == name and p["archived_at"]]
    where = f" as {refs[-1]}" if refs else ""
    purged = "; its artifacts were purged" if purge else ""
    typer.echo(f"Pipeline {name} archived{where} (history kept, never runs again){purged}")


@app.command("pause")
def pause(name: Name, url: UrlOption = None, output: OutputOption = OutputFormat.text) -> None:
    """Stop the pipeline's triggers from firing."""
    _set_paused(name, "pause", url, output)


@app.command("resume")
def resume(name: Name, url: UrlOption = None, output: OutputOption = OutputFormat.text) -> None:
    """Let the pipeline's triggers fire again."""
    _set_paused(name, "resume", url, output)


def _set_paused(name: str, action: str, url: str | None, output: OutputFormat) -> None:
    with connect(url) as client:
        pipeline = client.post(f"/pipelines/{segment(name)}/{action}")
    if output is OutputFormat.json:
        render.print_json(pipeline)
    else:
        typer.echo(f"Pipeline {name} {'paused' if pipeline['paused'] else 'resumed'}")
