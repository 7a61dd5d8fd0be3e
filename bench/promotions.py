"""A promotion's latency as a pipeline's version history grows.

Runs the real service (SQLite, thread executor), trains two versions of a tiny pipeline, then
times `POST /pipelines/{name}/models/{v}/promote`, switching production between the two, with
only those two versions and again after copying version 2 into --versions archived ones
(written straight into the database: training a thousand models would take minutes and
measure nothing more). Prints both medians and their ratio. Target: a promotion with 1,000
versions within 1.5x of one with two. Run from the repository root:
`.venv/bin/python bench/promotions.py [--versions 1000] [--samples 20]`.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import TINY, BenchError, Service, run_in_workdir, tiny_spec, trigger_and_wait

TARGET_RATIO = 1.5


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    options = parser.parse_args(argv)
    return run_in_workdir(
        lambda workdir: _measure(workdir, options.versions, options.samples),
        prefix="mlops-promotions-",
        keep=options.keep,
        logs="server.log",
    )


def _measure(workdir: Path, versions: int, samples: int) -> None:
    (workdir / "data").mkdir()
    service = Service(workdir, threads=1)
    service.start()
    try:
        service.create(tiny_spec())
        for _ in range(2):
            trigger_and_wait(service, TINY, poll_s=0.02)
        few = _promotions(service, samples)
        _copy_versions(workdir / ".mlops" / "mlops.db", versions)
        many = _promotions(service, samples)
    finally:
        service.stop()
    ratio = many / few
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print("=== promotion latency against version history (SQLite, one client) ===")
    print(f"  2 versions:            median {few:6.2f} ms over {samples} promotions")
    print(f"  {versions + 2:,} versions:  median {many:6.2f} ms over {samples} promotions")
    print(f"  ratio {ratio:.2f}  (target <= {TARGET_RATIO})  {verdict}")


def _promotions(service: Service, samples: int) -> float:
    """Median ms of promoting versions 1 and 2 in turns."""
    took = []
    for i in range(samples):
        start = time.perf_counter()
        response = service.api.post(
            f"/pipelines/{TINY}/models/{1 + i % 2}/promote", json={"reason": "benchmark"}
        )
        took.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise BenchError(f"promote: {response.status_code} {response.text}")
    return statistics.median(took) * 1000


def _copy_versions(database: Path, count: int) -> None:
    """`count` archived copies of version 2, numbered from 3."""
    with sqlite3.connect(database) as db:
        columns = [
            row[1]
            for row in db.execute("PRAGMA table_info(model_versions)")
            if row[1] not in ("id", "version", "stage")
        ]
        listed = ", ".join(columns)
        db.executemany(
            f"INSERT INTO model_versions ({listed}, version, stage) "
            f"SELECT {listed}, ?, 'archived' FROM model_versions WHERE version = 2",
            [(version,) for version in range(3, count + 3)],
        )


if __name__ == "__main__":
    sys.exit(main())
