"""Training processes: results and errors come back, a dead or stopped child never hangs a run,
and children run below the control plane's CPU priority."""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from app.execution import fitting, processes, rehearsal, transfer
from app.execution.processes import Children, ProcessLost
from app.registry.artifacts import LocalArtifactStore
from app.spec.schema import PipelineSpec
from app.training.errors import TrainingError
from app.training.fingerprint import row_hashes
from app.training.holdout import Split, split_holdout


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def fail_training() -> None:
    raise TrainingError("Training failed: bad params")


def raise_unpicklable() -> None:
    raise Unpicklable


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def nice_and_pid() -> tuple[int, int]:
    return os.getpriority(os.PRIO_PROCESS, 0), os.getpid()


def returns_lock() -> threading.Lock:
    return threading.Lock()


@pytest.fixture
def children() -> Iterator[Children]:
    pool = Children(prepare=rehearsal.rehearse_fitting)
    yield pool
    pool.close()


def test_result_comes_back_from_a_lower_priority_child(children: Children) -> None:
    nice, pid = children.call(nice_and_pid)
    assert pid != os.getpid()
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + processes.NICE)


def test_exception_comes_back_and_the_child_is_reused(children: Children) -> None:
    first = children.call(sleep_then_pid, 0)
    with pytest.raises(TrainingError, match=r"^Training failed: bad params$"):
        children.call(fail_training)
    assert children.call(sleep_then_pid, 0) == first


def test_unpicklable_exception_and_result_are_told_in_words(children: Children) -> None:
    with pytest.raises(RuntimeError, match=r"^Unpicklable: holds a lock$"):
        children.call(raise_unpicklable)
    with pytest.raises(TypeError, match="result of returns_lock could not be sent"):
        children.call(returns_lock)
    assert children.call(sleep_then_pid, 0) > 0


def test_a_dead_child_fails_the_call_and_the_next_call_gets_a_new_one(
    children: Children,
) -> None:
    before = children.call(sleep_then_pid, 0)
    with pytest.raises(ProcessLost, match=r"^the training process was killed by SIGABRT$"):
        children.call(os.abort)
    with pytest.raises(ProcessLost, match=r"exited unexpectedly \(exit code 3\)"):
        children.call(os._exit, 3)
    assert children.call(sleep_then_pid, 0) not in (before, os.getpid())


def test_stop_kills_the_child_mid_call(children: Children) -> None:
    asked = 0

    def stop() -> Exception | None:
        nonlocal asked
        asked += 1
        return RuntimeError("cancelled") if asked >= 2 else None

    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^cancelled$"):
        children.call(sleep_then_pid, 60, stop=stop)
    assert time.monotonic() - started < 10
    assert children.call(sleep_then_pid, 0) > 0


def test_idle_children_are_capped_and_reused(children: Children) -> None:
    pids: set[int] = set()
    lock = threading.Lock()

    def one() -> None:
        pid = children.call(sleep_then_pid, 0.5)
        with lock:
            pids.add(pid)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pids) == 4  # one child per concurrent call
    again = {children.call(sleep_then_pid, 0) for _ in range(3)}
    assert again <= pids and children.idle() == processes.IDLE_CHILDREN


def iris_task(store: LocalArtifactStore, version: int = 1) -> fitting.Task:
    spec = PipelineSpec.model_validate(
        {
            "name": "iris",
            "source": {"kind": "sklearn", "dataset": "iris"},
            "target": "target",
            "model": {
                "estimator": "sklearn.tree.DecisionTreeClassifier",
                "params": {"random_state": 0},
            },
        }
    )
    return fitting.Task(spec, "classifier", ("sklearn.",), None, store, "iris", version)


def iris_split(child: processes.Child, task: fitting.Task) -> Split:
    """The iris rows split in `child`, which keeps them for its next fit."""
    return child.call(fitting.split, (load_iris(as_frame=True).frame, task.spec, task.kind), None)


def test_the_training_process_splits_as_the_service_would_and_fits_on_its_training_side(
    children: Children, tmp_path: Path
) -> None:
    frame = load_iris(as_frame=True).frame
    task = iris_task(LocalArtifactStore(tmp_path))
    expected = split_holdout(frame, task.spec, task.kind)
    with children.reserved() as child:
        seen = iris_split(child, task)
        candidate = child.call(fitting.fit, (task,), None)
        model = child.call(fitting.take_model, (), None)
        # The rows went to that fit: the next fit needs a split of its own.
        with pytest.raises(RuntimeError, match="holds no split rows"):
            child.call(fitting.fit, (task,), None)
    assert seen.train_rows == len(expected.X_train) == 120
    assert seen.X_test.equals(expected.X_test) and seen.y_test.equals(expected.y_test)
    assert seen.y_train.equals(expected.y_train)
    assert (seen.hashes == row_hashes(frame)).all()
    # Fitted on exactly the training side: the same tree as a fit on it here.
    here = DecisionTreeClassifier(random_state=0).fit(expected.X_train, expected.y_train)
    X = frame.drop(columns="target")  # noqa: N806
    assert (model.predict(X) == here.predict(X)).all()
    assert candidate.score == model.score(expected.X_test, expected.y_test)


def test_a_candidate_is_scored_stored_and_served_as_one_model(
    children: Children, tmp_path: Path
) -> None:
    frame = load_iris(as_frame=True).frame
    X = frame.drop(columns="target")  # noqa: N806
    store = LocalArtifactStore(tmp_path)
    with children.reserved() as child:
        h = iris_split(child, iris_task(store))
        candidate = child.call(fitting.fit, (iris_task(store),), None)
        stored = child.call(fitting.stored, (), None)
        model = child.call(fitting.take_model, (), None)
        # Taken: the child holds no candidate any more, and says so instead of writing another.
        with pytest.raises(RuntimeError, match="holds no fitted candidate"):
            child.call(fitting.stored, (), None)
    # The score, the artifact and the served model are all the one fitted in the child.
    assert candidate.score == model.score(h.X_test, h.y_test)
    loaded = store.load(stored.uri, stored.sha256)
    assert (loaded.predict(X) == model.predict(X)).all()
    assert (candidate.predictions.predict(h.X_test) == model.predict(h.X_test)).all()


def loaded_modules() -> frozenset[str]:
    return frozenset(sys.modules)


def test_a_new_training_process_imports_nothing_for_its_first_candidate(
    children: Children, tmp_path: Path
) -> None:
    # The forkserver rehearsed a run's ML work as it preloaded (app.execution.rehearsed):
    # what scikit-learn, pandas and skops import on first use, the first run would import
    # beside its fit.
    task = iris_task(LocalArtifactStore(tmp_path))
    with children.reserved() as child:
        before = child.call(loaded_modules, (), None)
        iris_split(child, task)
        child.call(fitting.fit, (task,), None)
        child.call(fitting.stored, (), None)
        after = child.call(loaded_modules, (), None)
    assert sorted(after - before) == []


def thread_page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def process_page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def forest_job(tmp_path: Path) -> tuple[pd.DataFrame, PipelineSpec, fitting.Task]:
    """30,000 rows and 10 trees: the rows to split, the spec, and the fit's task."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(30_000, 8)), columns=[f"x{i}" for i in range(8)])
    frame["label"] = (frame["x0"] + rng.normal(size=len(frame)) > 0).astype(int)
    spec = PipelineSpec.model_validate(
        {
            "name": "forest",
            "source": {"kind": "csv", "path": "forest.csv"},
            "target": "label",
            "model": {
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "params": {"n_estimators": 10, "random_state": 0},
            },
        }
    )
    store = LocalArtifactStore(tmp_path)
    return frame, spec, fitting.Task(spec, "classifier", ("sklearn.",), None, store, "forest", 1)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator and per-thread counts")
def test_a_new_training_process_fits_in_memory_it_already_has(
    children: Children, tmp_path: Path
) -> None:
    # A new process's allocator mapped a fit's arrays afresh, page by page, and trimmed them
    # away again: 10 trees on 30,000 rows took ~5,500 page faults in a new process and ~4,000
    # in every fit after. Set up at its start (processes._prefault), it takes ~1,600, then ~10.
    frame, spec, task = forest_job(tmp_path)
    faults = []
    with children.reserved() as child:
        for _ in range(3):
            child.call(fitting.split, (frame, spec, "classifier"), None)
            before = child.call(thread_page_faults, (), None)  # the thread that fits
            child.call(fitting.fit, (task,), None)
            faults.append(child.call(thread_page_faults, (), None) - before)
            child.call(fitting.forget, (), None)
    assert faults[0] < 3000, faults
    assert max(faults[1:]) < 1000, faults


@pytest.mark.skipif(sys.platform != "linux", reason="copy-on-write pages, page-fault counts")
def test_a_new_training_process_has_made_a_runs_calls_before_its_first_run(
    tmp_path: Path,
) -> None:
    # A forked process copies a page it shares with the forkserver at its first write there,
    # and its artifact writer's thread starts with its first artifact: a new process's first
    # run took ~3,900 page faults across its threads, later runs ~400. A process prepared with
    # the rehearsal of a run's calls (rehearsal.rehearse_fitting) takes ~1,100.
    frame, spec, task = forest_job(tmp_path)
    pool = Children(prepare=rehearsal.rehearse_fitting)
    try:
        with pool.reserved() as child:
            before = child.call(process_page_faults, (), None)
            child.call(fitting.split, (frame, spec, "classifier"), None)
            candidate = child.call(fitting.fit, (task,), None)
            stored = child.call(fitting.stored, (), None)
            child.call(fitting.forget, (), None)
            faults = child.call(process_page_faults, (), None) - before
    finally:
        pool.close()
    assert faults < 2500, faults
    # What the rehearsal held is gone: the run's own candidate and artifact came back.
    assert isinstance(candidate.score, float) and candidate.score > 0.6
    assert stored.uri == "forest/v1.skops" and (tmp_path / stored.uri).is_file()


def heap_census() -> tuple[int, int]:
    return gc.get_freeze_count(), len(gc.get_objects())


def test_a_training_process_starts_with_the_training_stack_frozen(children: Children) -> None:
    # The forkserver froze what it had preloaded (app.core.heap): a full collection in a
    # training process walks none of the ~170,000 objects of the training stack.
    frozen, _ = children.call(heap_census)
    assert frozen > 100_000


def test_the_service_warm_up_leaves_nothing_for_a_full_collection_to_walk() -> None:
    # In a fresh interpreter, as `mlops serve` and `mlops worker` warm up.
    code = (
        "from app.execution import processes, worker; processes.start_forkserver();"
        "worker.warm_up(); from tests.test_processes import heap_census; print(*heap_census())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    frozen, tracked = map(int, done.stdout.split()[-2:])
    assert frozen > 100_000
    assert tracked < frozen // 100, (frozen, tracked)


def test_the_start_up_rehearsal_runs_clean(caplog: pytest.LogCaptureFixture) -> None:
    rehearsal.rehearse()
    assert not [r for r in caplog.records if r.name == rehearsal.__name__]


def test_a_candidate_nobody_takes_is_forgotten(children: Children, tmp_path: Path) -> None:
    task = iris_task(LocalArtifactStore(tmp_path), 3)
    with children.reserved() as child:
        iris_split(child, task)
        child.call(fitting.fit, (task,), None)
        child.call(fitting.forget, (), None)
        with pytest.raises(RuntimeError, match="holds no fitted candidate"):
            child.call(fitting.take_model, (), None)
        # Split rows nobody fitted on are forgotten too (a run rejected by validate).
        iris_split(child, task)
        child.call(fitting.forget, (), None)
        with pytest.raises(RuntimeError, match="holds no split rows"):
            child.call(fitting.fit, (task,), None)
    # Forgetting waits for the artifact: a later fit never races an earlier write.
    assert (tmp_path / "iris" / "v3.skops").is_file()


def allocate_under_cap(megabytes: int, cap_mb: int) -> tuple[str, int]:
    """What allocating `megabytes` gives inside a memory cap, and the bytes allocated after."""
    try:
        with fitting.memory_cap(cap_mb):
            np.ones(megabytes * 2**20, dtype=np.uint8)
        inside = "allocated"
    except MemoryError:
        inside = "MemoryError"
    return inside, np.ones(megabytes * 2**20, dtype=np.uint8).nbytes


def test_the_memory_cap_holds_for_its_block_only(children: Children) -> None:
    assert children.call(allocate_under_cap, 300, 100) == ("MemoryError", 300 * 2**20)
    assert children.call(allocate_under_cap, 50, 100) == ("allocated", 50 * 2**20)


# --- large arguments: shared memory, one file reused per child ------------------------------


def sum_then_scribble(
    frame: pd.DataFrame, values: npt.NDArray[np.float64]
) -> tuple[float, pd.DataFrame, npt.NDArray[np.float64]]:
    """The sum of `values` as it arrived, then everything back after writing over `values`."""
    total = float(values.sum())
    values[:] = -1.0  # an estimator that writes into its input array
    return total, frame, values


def big_frame(seed: int, rows: int = 200_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": rng.integers(0, 1000, rows),
            "segment": pd.Series(rng.choice(list("abc"), rows), dtype="string"),
            "level": pd.Categorical(rng.choice(["low", "high"], rows)),
        }
    )


def test_large_arguments_arrive_intact_call_after_call(children: Children) -> None:
    assert big_frame(0).memory_usage(deep=True).sum() > transfer.SHARED_MIN_BYTES
    for seed in (1, 2, 3):  # the same child and the same shared file each time
        frame = big_frame(seed)
        values = frame["x"].to_numpy(copy=True)
        total, back, scribbled = children.call(sum_then_scribble, frame, values)
        assert total == pytest.approx(float(values.sum()))
        assert (scribbled == -1.0).all()
        # The child's write reached neither our array nor the next call's data.
        assert (values != -1.0).all()
        pd.testing.assert_frame_equal(back, frame)


def test_warm_starts_a_child_that_the_next_call_uses(children: Children) -> None:
    children.warm()
    assert children.idle() == 1
    warm_pid = children._idle[0].process.pid
    assert children.call(os.getpid) == warm_pid
    children.warm()  # one is idle already: nothing more starts
    assert children.idle() == 1


def test_a_retired_child_is_replaced_before_the_next_call(
    children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "CALLS_PER_CHILD", 2)
    first = {children.call(os.getpid) for _ in range(2)}  # the second call retires it
    deadline = time.monotonic() + 30
    while children.idle() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children.idle() == 1  # its successor, started without a call
    assert children.call(os.getpid) not in first


def numbers(rows: int = 400_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)  # 6.4 MB, all of it sent out of band
    return pd.DataFrame({"x": rng.normal(size=rows), "n": rng.integers(0, 1000, rows)})


def first_send_page_faults(children: Children) -> tuple[int, int]:
    """A warm child's first call with numbers(): the page faults of sending it, and the
    size its shared input file has after the call."""
    children.warm()
    frame = numbers()
    values = frame["x"].to_numpy(copy=True)
    with children.reserved() as child:
        before = thread_page_faults()
        pending = child.start(sum_then_scribble, (frame, values))
        faults = thread_page_faults() - before
        pending.result(None)
        return faults, child.outbox.capacity


def test_a_childs_shared_input_file_is_written_before_its_first_call(
    children: Children,
) -> None:
    fresh, _ = first_send_page_faults(children)
    expecting = Children()
    try:
        expecting.expect_inputs(16 << 20)
        ready, _ = first_send_page_faults(expecting)
    finally:
        expecting.close()
    # The frame and a copy of a column, 9.6 MB: measured ~2,300 faults into a new file, 0
    # into one written ahead.
    assert fresh > 1_000
    assert ready < 200


def test_a_childs_successor_is_ready_for_what_it_was_sent(
    children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "CALLS_PER_CHILD", 1)  # the first call retires the child
    _, capacity = first_send_page_faults(children)
    assert capacity >= numbers().memory_usage(index=False).sum()
    deadline = time.monotonic() + 30
    while children.idle() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children.idle() == 1  # the successor, started without a call
    assert children._idle[0].outbox.capacity == capacity  # no more, generation after generation
