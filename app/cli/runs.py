"""`mlops run show | watch`: one run and its steps, and following a run live until it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live

from app.cli import render
from app.cli.client import Client, UrlOption, connect
from app.cli.render import Json, OutputFormat, OutputOption

POLL_S = 0.3

app = typer.Typer(help="Runs: show one, watch one live.", no_args_is_help=True)
RunId = Annotated[int, typer.Argument(help="Run id", min=1)]


@app.command("show")
def show(run_id: RunId, url: UrlOption = None, output: OutputOption = OutputFormat.text) -> None:
    """One run: what triggered it, its steps, metrics and error."""
    with connect(url) as client:
        run = client.get(f"/runs/{run_id}")
    if output is OutputFormat.json:
        render.print_json(run)
    else:
        render.console().print(render.run_record(run))


@app.command("watch")
def watch_command(
    run_id: RunId, url: UrlOption = None, output: OutputOption = OutputFormat.text
) -> None:
    """Follow a run's steps until it ends; exit 1 if it failed, was rejected or cancelled."""
    with connect(url) as client:
        watch(client, run_id, output=output)


def watch(client: Client, run_id: int, *, output: OutputFormat) -> None:
    """Poll the run until it is final, showing its progress; exits with the run's outcome."""
    try:
        run = _follow(client, run_id, output)
    except KeyboardInterrupt:
        typer.echo(f"Stopped watching run {run_id}; it carries on on the server", err=True)
        raise typer.Exit(130) from None
    if output is OutputFormat.json:
        render.print_json(run)
    else:
        for line in render.run_outcome(run):
            typer.echo(line)
    raise typer.Exit(0 if run["status"] in render.GOOD_STATUSES else 1)


def _follow(client: Client, run_id: int, output: OutputFormat) -> Json:
    if output is OutputFormat.json:
        return poll(client, run_id, on_update=lambda run: None)
    out = render.console()
    if not out.is_terminal:
        return poll(client, run_id, on_update=StepLines())
    with Live(console=out, refresh_per_second=8) as live:
        return poll(client, run_id, on_update=lambda run: live.update(_live_view(run)))


def poll(client: Client, run_id: int, *, on_update: Callable[[Json], None]) -> Json:
    """GET the run every POLL_S seconds, telling `on_update`, until its status is final."""
    while True:
        run: Json = client.get(f"/runs/{run_id}")
        on_update(run)
        if run["status"] in render.FINAL_STATUSES:
            return run
        time.sleep(POLL_S)


def _live_view(run: Json) -> Group:
    return Group(render.run_header(run), render.steps_table(run))


class StepLines:
    """Without a terminal: one line each time a step's status changes (pending is the start)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, run: Json) -> None:
        for step in run["steps"]:
            if step["status"] != self.seen.get(step["name"], "pending"):
                typer.echo(render.step_line(step))
            self.seen[step["name"]] = step["status"]
