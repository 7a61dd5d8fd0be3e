"""The `mlops` command line."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from app.cli import keys, models, pipelines, prune, runs, subscriptions
from app.cli.client import DEFAULT_URL, Globals, set_globals

app = typer.Typer(help="mlops: a retraining control plane.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(pipelines.app, name="pipeline")
app.add_typer(models.app, name="model")
app.add_typer(runs.app, name="run")
app.add_typer(keys.app, name="key")
app.add_typer(subscriptions.app, name="subscription")
app.command("prune")(prune.prune)


def _version() -> str:
    try:
        return version("mlops")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mlops {_version()}")
        raise typer.Exit()


@app.callback()
def global_options(
    url: Annotated[
        str | None,
        typer.Option(
            envvar="MLOPS_URL", help=f"Base URL of the mlops server (default {DEFAULT_URL})"
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MLOPS_TOKEN",
            help="API key (default: the key `mlops serve` wrote in $MLOPS_DATA_DIR/admin-token)",
            show_envvar=True,
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """mlops: a retraining control plane."""
    set_globals(Globals(url=url or None, token=token or None))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    demo: Annotated[bool, typer.Option(help="Create the demo pipeline if missing")] = False,
    root_path: Annotated[
        str, typer.Option(help="Path prefix a reverse proxy serves the API under (/mlops)")
    ] = "",
) -> None:
    """Migrate the database and serve the API."""
    # Imported here: the server side pulls in scikit-learn, which would slow every client command.
    from app.cli import serve as server
    from app.core.settings import Settings

    server.serve(Settings(), host=host, port=port, demo=demo, root_path=root_path)


@app.command()
def worker(
    name: Annotated[
        str | None, typer.Option(help="Recorded on the runs it executes; default host:pid")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs executed at once")] = 1,
    queues: Annotated[str, typer.Option(help="Comma-separated queues to take runs from")] = (
        "default"
    ),
) -> None:
    """Execute runs taken from the Celery broker (MLOPS_BROKER_URL)."""
    from app.cli import worker as workers
    from app.core.settings import Settings

    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    if not chosen:
        raise typer.BadParameter("name at least one queue", param_hint="--queues")
    workers.run_worker(
        Settings(), name=name or workers.default_name(), concurrency=concurrency, queues=chosen
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest revision."""
    from app.cli import serve as server
    from app.core.settings import Settings

    settings = Settings()
    server.upgrade_database(settings)
    typer.echo("Database is at the latest revision")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
