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


# In a fresh interpreter, one thread writes 48 MB in 1 MB blocks (a run's arrays, as far as
# the allocator sees them), after `fault_in` of 64 MB in that same thread or not: the page
# faults of those writes.
WRITES = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
from app.core import heap
assert heap.keep_freed_memory()
def writes():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [b"\\x02" * (1 << 20) for _ in range(48)]
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with ThreadPoolExecutor(1) as pool:
    if sys.argv[1] == "ready":
        assert heap.keep_reserve(64 << 20)
        pool.submit(heap.fault_in, 64 << 20).result()
    print(pool.submit(writes).result())
"""


def page_faults_of_writes(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", WRITES, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_memory_faulted_in_ahead_serves_a_threads_first_writes() -> None:
    # 48 MB of fresh pages is 12,288 faults of 4 kB; after fault_in the arena has them.
    assert page_faults_of_writes("fresh") > 10_000
    assert page_faults_of_writes("ready") < 1_000


def test_an_operator_tuned_allocator_gets_no_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.top_pad=0")
    assert heap.keep_reserve(64 << 20) is False
