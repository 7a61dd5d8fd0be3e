"""How long the dashboard's pipeline list takes with 10,000 pipelines (SQLite, in-process).

    .venv/bin/python -m bench.dashboard

Prints the median of 5 requests for the first page, page 100, the last page (200) and a
name filter.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from sqlalchemy import create_engine, insert

from app.core import migrate
from app.core.settings import Settings
from app.main import create_app
from app.pipelines.models import Pipeline

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PIPELINES = 10_000
TOKEN = "bench-admin-token-0123456789abcdefghij"
SPEC = {
    "source": {"kind": "sklearn", "dataset": "iris"},
    "target": "target",
    "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
    "triggers": [{"kind": "cron", "schedule": "0 3 * * *"}],
}


def main() -> None:
    workdir = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=workdir / ".mlops", admin_token=TOKEN, source_dirs=[workdir])
    settings.data_dir.mkdir()
    migrate.upgrade(settings.resolved_database_url)
    engine = create_engine(settings.resolved_database_url)
    rows = [
        {"name": f"p-{i:05d}", "spec": {**SPEC, "name": f"p-{i:05d}"}, "webhook_secret": "s"}
        for i in range(PIPELINES)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Pipeline), rows)
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/login").text)
        assert csrf is not None
        client.post("/ui/login", data={"csrf": csrf.group(1), "key": TOKEN})
        for path in ["/ui", "/ui?page=100", "/ui?page=200", "/ui?q=p-0999"]:
            took = []
            for _ in range(5):
                started = time.perf_counter()
                assert client.get(path).status_code == 200
                took.append(time.perf_counter() - started)
            print(
                f"{PIPELINES} pipelines, GET {path}: median {statistics.median(took) * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
