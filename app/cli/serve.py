"""`mlops serve` and `mlops db upgrade`: the commands that run in the server's own process."""

from __future__ import annotations

import logging
import os
import threading
from importlib import resources

import yaml

from app.core import heap, logs, migrate
from app.core.db import make_engine, make_session_factory, unit_of_work
from app.core.settings import Settings
from app.execution.env import WorkerEnv
from app.pipelines import service as pipelines
from app.pipelines.parsing import parse_spec

log = logging.getLogger("mlops")


def upgrade_database(settings: Settings) -> None:
    """Migrate the configured database to the latest revision."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url)


def load_demo(settings: Settings) -> str:
    """Create the demo pipeline unless it exists; returns its name."""
    text = resources.files("app.demo").joinpath("breast-cancer.yaml").read_text()
    spec = parse_spec(yaml.safe_load(text), settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if pipelines.find(session=session, name=spec.name) is None:
                pipelines.create(session=session, spec=spec)
                log.info("created demo pipeline %s", spec.name)
    finally:
        engine.dispose()
    return spec.name


def _warm_up_in_background(ready: threading.Event, env: WorkerEnv) -> None:
    """The training stack imported, a training process started and production's models loaded
    while the API starts; /readyz answers 503 until then, so that the first run after a start
    is as fast as any other. This process holds the training stack and the models from the
    start (which it would load at the first run, or the first /predict, anyway)."""
    ready.clear()

    def warm_up() -> None:
        from app.execution import worker

        try:
            worker.warm_up()
            worker.prepare(env)
        except Exception:
            log.exception("could not prepare a training process; the first run will start one")
        finally:
            ready.set()

    threading.Thread(target=warm_up, name="mlops-warm-up", daemon=True).start()


def serve(settings: Settings, *, host: str, port: int, demo: bool, root_path: str = "") -> None:
    """Migrate, optionally load the demo pipeline, and serve the API with uvicorn."""
    import uvicorn

    from app.main import create_app

    log_config = logs.configure(settings.log_format)
    heap.keep_freed_memory()
    upgrade_database(settings)
    if demo:
        load_demo(settings)
    app = create_app(settings)
    if settings.executor == "thread":
        from app.execution import processes

        processes.start_forkserver()
        if settings.warm_start:
            services = app.state.services
            _warm_up_in_background(services.training_ready, services.env)
    uvicorn.run(
        app, host=host, port=port, log_level="info", log_config=log_config, root_path=root_path
    )
    if app.state.services.executor.executing():
        # Runs still training were marked interrupted at shutdown; do not wait for their
        # threads (the interpreter would join them), exit now.
        logging.shutdown()
        os._exit(0)
