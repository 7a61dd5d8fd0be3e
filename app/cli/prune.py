"""`mlops prune --older-than DURATION`: retention of finished runs, batches, observations."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from app.cli import render
from app.cli.client import UrlOption, connect, fail
from app.cli.render import OutputFormat, OutputOption

DURATION = re.compile(r"(\d+)([smhdw])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def seconds(duration: str) -> int:
    """`30d` -> 2592000; units s, m, h, d, w."""
    match = DURATION.fullmatch(duration.strip())
    if match is None:
        fail(
            f"--older-than {duration!r}: expected a number and a unit (s m h d w), e.g. 30d", code=2
        )
    return int(match.group(1)) * UNIT_S[match.group(2)]


def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age cut-off, e.g. 90d (at least 1d)")
    ],
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Delete finished runs, data batches and metric observations older than the cut-off
    (runs that made a model version, versions and artifacts stay; needs an admin key)."""
    body = {"older_than_s": seconds(older_than)}
    with connect(url) as client:
        pruned = client.post("/prune", body=body)
    if output is OutputFormat.json:
        render.print_json(pruned)
        return
    typer.echo(
        f"Pruned {pruned['runs']} runs, {pruned['data_batches']} data batches and "
        f"{pruned['observations']} observations from before {render.format_time(pruned['before'])}"
    )
