"""The service's allocator keeps what a run frees for the next run (app.core.heap)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.core import heap

# Four threads, each reading and hashing a 100,000-row CSV, four at a time, six rounds: the
# page faults of each round, in a fresh interpreter (the allocator's settings are per process).
ROUNDS = """
import io, json, resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np, pandas as pd
from app.core import heap
if sys.argv[1] == "keep":
    assert heap.keep_freed_memory()
rng = np.random.default_rng(0)
data = pd.DataFrame(rng.normal(size=(100_000, 8))).to_csv(index=False).encode()
def work():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    frame = pd.read_csv(io.BytesIO(data))
    pd.util.hash_pandas_object(frame, index=False).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with ThreadPoolExecutor(4) as pool:
    rounds = [sum(f.result() for f in [pool.submit(work) for _ in range(4)]) for _ in range(6)]
print(json.dumps(rounds))
"""


def page_faults_by_round(mode: str) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True
    )
    rounds: list[int] = json.loads(done.stdout)
    return rounds


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_what_a_run_frees_serves_the_next_run_without_new_pages() -> None:
    # By default each of those rounds took ~30,000-47,000 page faults, the sixth as the
    # first: the threads' arrays kept landing on fresh pages. Kept: ~0-6,000 from the fifth.
    assert min(page_faults_by_round("default")[-2:]) > 15_000
    assert min(page_faults_by_round("keep")[-2:]) < 10_000


def test_an_allocator_the_operator_tunes_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.keep_freed_memory() is False
