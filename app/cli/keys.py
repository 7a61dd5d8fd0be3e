"""`mlops key create | list | revoke`: API keys (admin)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from app.cli import render
from app.cli.client import UrlOption, connect
from app.cli.render import OutputFormat, OutputOption

app = typer.Typer(help="API keys: create, list, revoke (needs an admin key).", no_args_is_help=True)


class RoleChoice(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what will use the key (ci-deployer)")],
    role: Annotated[
        RoleChoice, typer.Option(help="viewer: read; operator: also runs and models; admin: all")
    ] = RoleChoice.viewer,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Create an API key; it is printed this once only."""
    with connect(url) as client:
        created = client.post("/keys", body={"name": name, "role": role.value})
    if output is OutputFormat.json:
        render.print_json(created)
        return
    typer.echo(f"Key {created['id']} ({created['name']}, {created['role']}) created")
    typer.echo(f"Key: {created['key']} (shown only this once; store it)")


@app.command("list")
def list_keys(url: UrlOption = None, output: OutputOption = OutputFormat.text) -> None:
    """API keys, newest first: prefixes only, never the keys."""
    with connect(url) as client:
        page = client.get("/keys", params={"limit": 500})
    render.print_page(page, output, render.keys_table, empty="No API keys")


@app.command("revoke")
def revoke(
    key_id: Annotated[int, typer.Argument(help="Key id (see mlops key list)", min=1)],
    url: UrlOption = None,
) -> None:
    """Revoke an API key: refused from its next request on."""
    with connect(url) as client:
        client.request("DELETE", f"/keys/{key_id}")
    typer.echo(f"Key {key_id} revoked")
