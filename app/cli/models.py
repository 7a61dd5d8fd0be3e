"""`mlops model list | promote | rollback`: a pipeline's model versions and which one serves."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli import render
from app.cli.client import UrlOption, connect, segment
from app.cli.render import Json, OutputFormat, OutputOption

app = typer.Typer(help="Model versions: list, promote, roll back.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="Pipeline name")]
Reason = Annotated[str | None, typer.Option(help="Why, for the promotion ledger")]


@app.command("list")
def list_models(
    name: Name, url: UrlOption = None, output: OutputOption = OutputFormat.text
) -> None:
    """Every model version of a pipeline, newest first."""
    with connect(url) as client:
        versions = client.get(f"/pipelines/{segment(name)}/models")
    if output is OutputFormat.json:
        render.print_json(versions)
    elif not versions:
        typer.echo(f"Pipeline {name} has no model versions yet")
    else:
        render.console().print(render.models_table(versions))


@app.command("promote")
def promote(
    name: Name,
    version: Annotated[int, typer.Argument(help="Version number", min=1)],
    reason: Reason = None,
    force: Annotated[
        bool, typer.Option("--force", help="Override a gate that rejected VERSION (needs --reason)")
    ] = False,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Make VERSION the production model (its deploy target runs first)."""
    if force and not (reason and reason.strip()):
        raise typer.BadParameter("--force needs --reason: say why the gate is overridden")
    body = {**(_reason(reason) or {}), **({"force": True} if force else {})}
    with connect(url) as client:
        entry = client.post(
            f"/pipelines/{segment(name)}/models/{version}/promote", body=body or None
        )
    _report(name, entry, output)


@app.command("rollback")
def rollback(
    name: Name,
    reason: Reason = None,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Return production to the version that was live before the current one."""
    with connect(url) as client:
        entry = client.post(f"/pipelines/{segment(name)}/rollback", body=_reason(reason))
    _report(name, entry, output)


def _reason(reason: str | None) -> Json | None:
    return {"reason": reason} if reason else None


def _report(name: str, entry: Json, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        render.print_json(entry)
        return
    previous = entry["from_version"]
    was = "no model" if previous is None else render.version_label(previous)
    verb = "rolled back to" if entry["action"] == "rollback" else "promoted"
    typer.echo(f"Pipeline {name}: {verb} {render.version_label(entry['to_version'])} (was {was})")
    if entry.get("forced"):
        typer.echo(f"Gate overridden: {entry['gate_reason']}")
