"""Where fits execute: child processes, so a training never holds the control plane's GIL.

Responsible for: a few warm child processes (forked from a forkserver that has scikit-learn and
pandas imported), giving one call at a time to one of them, and killing that child when the run
is cancelled, times out or loses its lease in the middle of a fit.

Why processes: the clock, the claims, the API and the heartbeat run in the service's threads.
A fit in a thread of the same process competes with them for the interpreter lock; with ten
trainings on two cores a cron tick's few milliseconds of work waited seconds. In a child
process, at a lower CPU priority, a fit takes whatever the control plane leaves idle. It also
means that an estimator that crashes the interpreter, or is killed for its memory, fails its
run instead of the service.

Calls are plain functions and picklable arguments; the result (or the exception) comes back
pickled. Only our own children are trusted with pickle, over their own pipe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar, cast

from app.execution import orphans, transfer

log = logging.getLogger(__name__)
T = TypeVar("T")
StopCheck = Callable[[], Exception | None]
# What a new training process does before its first call, in the thread its calls run in.
Prepare = Callable[[], None]

# What a training process would otherwise import at its first fit and its first artifact:
# skops.io imports every scikit-learn estimator (~0.6 s), which covers whatever a spec names.
WARM_MODULES = ("skops.io",)
# Linux and macOS: children fork from a single-threaded server process that imported these
# modules once, so a new child is ready in milliseconds and never inherits the service's
# threads, locks or database connections (a plain fork of the service would).
# multiprocessing imports the parent's main module in every child. Preloading "__main__" (the
# `mlops` script) lets children skip that; under `python -m app.cli.main` the module is run
# again by name, which is cheap once its imports are preloaded.
PRELOAD = [
    "app.execution.orphans",  # first: the forkserver dies with its parent from the start
    "__main__",
    "app.cli.main",
    "app.execution.processes",
    "app.execution.fitting",
    *WARM_MODULES,  # imported by the forkserver once, not by each new training process
    "app.execution.rehearsed",  # and what a run's first fit, score and artifact import
]
_CONTEXT: ForkServerContext | SpawnContext
if "forkserver" in multiprocessing.get_all_start_methods():
    _CONTEXT = multiprocessing.get_context("forkserver")
    _CONTEXT.set_forkserver_preload(PRELOAD)
else:
    _CONTEXT = multiprocessing.get_context("spawn")

NICE = 10  # as the compute threads: control-plane work first, fits get every idle cycle
IDLE_CHILDREN = 2  # kept warm between calls; more start on demand
IDLE_EXPIRY_S = 300.0  # idle children beyond the first are stopped after this long
CALLS_PER_CHILD = 50  # a fresh child now and then returns memory a fit's allocator kept
KEEP_OUTBOX_BYTES = 256 << 20  # a child's shared input file is kept up to this size
WATCH_S = 0.2  # how often a waiting call asks whether to stop
ORPHAN_CHECK_S = 1.0
# Memory a new training process faults in for its fits before its first call (_prefault): an
# idle training process holds this much more of its own (209 MB resident against 152).
PREFAULT_MB = 56


class ProcessLost(Exception):
    """The child died during a call (killed, out of memory, crashed interpreter)."""


class Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, prepare: Prepare | None = None) -> None:
        parent_end, child_end = _CONTEXT.Pipe()
        self.process: BaseProcess = _CONTEXT.Process(
            target=serve, args=(child_end, prepare), name="mlops-fit", daemon=True
        )
        self.process.start()
        child_end.close()
        self.conn: Connection = parent_end
        self.outbox = transfer.Outbox()
        self.calls = 0
        self.busy = False  # a call was sent and its answer not read: never reuse
        self.idle_since = time.monotonic()

    def call(self, fn: Callable[..., T], args: tuple[Any, ...], stop: StopCheck | None) -> T:
        """fn(*args) in the child; its exception is raised here. Kills the child on a stop."""
        return self.start(fn, args).result(stop)

    def start(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Pending[T]:
        """Send fn(*args) to the child and return at once; the answer is read with
        `.result(stop)`, which must come before the next call."""
        self.calls += 1
        self.busy = True
        try:
            transfer.send(self.conn, (fn, args), self.outbox)
        except OSError as exc:
            lost = ProcessLost(self._death())
            lost.__cause__ = exc
            return Pending(self, lost)
        return Pending(self)

    def _answer(self, stop: StopCheck | None) -> Any:
        while not wait([self.conn, self.process.sentinel], timeout=WATCH_S):
            reason = stop() if stop is not None else None
            if reason is not None:
                self.close()
                raise reason
        try:
            ok, value = transfer.receive(self.conn)
        except (EOFError, OSError) as exc:
            raise ProcessLost(self._death()) from exc
        self.busy = False
        if self.outbox.capacity > KEEP_OUTBOX_BYTES:
            self.outbox.close()  # a rare huge input is not worth keeping the memory for
        if not ok:
            raise value
        return value

    def healthy(self) -> bool:
        return not self.busy and not self.conn.closed and self.process.is_alive()

    def close(self) -> None:
        """Stop the child now (SIGKILL: a fit does not check for signals)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        self.outbox.close()

    def _death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            return f"the training process was killed by {name}{hint}"
        return f"the training process exited unexpectedly (exit code {code})"


class Pending(Generic[T]):
    """A call sent to a child: its answer is read once, then given to every later ask."""

    def __init__(self, child: Child, failed: Exception | None = None) -> None:
        self._child = child
        self._read, self._error = failed is not None, failed
        self._value: Any = None

    def result(self, stop: StopCheck | None) -> T:
        """The call's result, or its exception; waits for it, killing the child on a stop."""
        if not self._read:
            try:
                self._value = self._child._answer(stop)
            except Exception as exc:
                self._error = exc
            self._read = True
        if self._error is not None:
            raise self._error
        return cast(T, self._value)


class Children:
    """The warm children of this process; a call takes one, gives it back when healthy.

    `prepare` (a module-level function: it is pickled by name) runs in each new child before
    its first call."""

    def __init__(self, prepare: Prepare | None = None) -> None:
        self._idle: list[Child] = []
        self._lock = threading.Lock()
        self.prepare = prepare
        # The size a child started by warm() makes its shared input file: that of the last
        # child given back, or what the start expects (expect_inputs).
        self._input_bytes = 0

    def call(self, fn: Callable[..., T], *args: Any, stop: StopCheck | None = None) -> T:
        with self.reserved() as child:
            return child.call(fn, args, stop)

    @contextmanager
    def reserved(self) -> Iterator[Child]:
        """One child for several calls in a row, which may then share what it keeps."""
        child = self._take()
        try:
            yield child
        finally:
            # After an exception raised by fn itself the child is as good as before; after a
            # stop, a death or an interrupted wait it is not.
            self._give_back(child)

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()

    def _take(self) -> Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.healthy():
                    return child
                child.close()
        return Child(self.prepare)

    def warm(self) -> None:
        """Start a child now unless one is idle, so that the next call waits for none."""
        with self._lock:
            if self._idle:
                return
        child = Child(self.prepare)
        child.outbox.reserve(self._input_bytes)
        # No refill: a child that died at once would start the next, and that the next.
        self._give_back(child, refill=False)

    def expect_inputs(self, size: int) -> None:
        """Ready the shared input file of each idle child, and of each child warm() starts
        later, for calls whose buffers take `size` bytes (at most KEEP_OUTBOX_BYTES)."""
        with self._lock:
            room = min(transfer.room_for(size), KEEP_OUTBOX_BYTES)
            self._input_bytes = max(self._input_bytes, room)
            for child in self._idle:
                child.outbox.reserve(self._input_bytes)

    def _give_back(self, child: Child, *, refill: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            kept = child.healthy() and child.calls < CALLS_PER_CHILD
            kept = kept and len(self._idle) < IDLE_CHILDREN
            if kept:
                child.idle_since = now
                self._idle.append(child)
            if child.outbox.capacity:
                self._input_bytes = child.outbox.capacity
            # The first idle child stays warm; others go once they have idled long enough.
            expired: list[Child] = []
            while len(self._idle) > 1 and now - self._idle[0].idle_since > IDLE_EXPIRY_S:
                expired.append(self._idle.pop(0))
            refill = refill and not self._idle
        for stale in expired if kept else [*expired, child]:
            stale.close()
        if refill:  # a retired or broken child: its successor starts now, not with a run
            threading.Thread(target=self.warm, name="mlops-warm-child", daemon=True).start()


CHILDREN = Children()


def call(fn: Callable[..., T], *args: Any, stop: StopCheck | None = None) -> T:
    """fn(*args) in a child process; `stop` is asked every 0.2 s whether to kill it."""
    return CHILDREN.call(fn, *args, stop=stop)


def warm_up(prepare: Prepare) -> None:
    """Have a training process ready (and the forkserver's imports done) before the first
    run; the forkserver must already be running (start_forkserver). Every training process
    started from now on runs `prepare` before its first call."""
    CHILDREN.prepare = prepare
    CHILDREN.warm()


def expect_inputs(size: int) -> None:
    """Ready the training processes' shared input files for `size` bytes (Children)."""
    CHILDREN.expect_inputs(size)


def reserved() -> AbstractContextManager[Child]:
    """A child process of our own for a sequence of `child.call(fn, args, stop)`."""
    return CHILDREN.reserved()


# --- the child's side ---------------------------------------------------------------------


def serve(conn: Connection, prepare: Prepare | None = None) -> None:
    """The child's loop: one call at a time until the parent closes the pipe."""
    _lower_priority()
    _exit_with_parent()
    # Calls run in one worker thread, not the main one: glibc gives a thread its own malloc
    # arena, which keeps freed memory for the next fit, where the main thread's arena hands
    # it back to the OS and faults it in again (~70 ms of a 1 s fit on this VM).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-fit") as worker:
        worker.submit(_prefault, PREFAULT_MB)  # while the process waits for its first call
        if prepare is not None:
            worker.submit(prepare)
        _loop(conn, worker)


def _prefault(megabytes: int) -> None:
    """Put the process's allocator in the state a used training process is in, and give the
    calling thread's malloc arena `megabytes` of memory already faulted in.

    glibc serves a large block from mmap while its threshold is low (128 kB at start), so a
    new process's first fit maps and unmaps its arrays, fresh pages every time, and trims the
    arena whenever it frees; freeing a block that came from mmap raises the threshold to the
    block's size (up to 32 MB) and lets an arena keep twice that. A used process is in that
    state; a new one was not. Its first fit of a 20-tree forest on 31,000 rows took ~10,400
    page faults against ~15 for its third; a logistic regression on 225,000 rows, ~7,500
    against ~2,000 and 70-140 ms more CPU. Freeing a 30 MB array raises the threshold to
    30 MB; the pieces, freed, stay in the arena (under 60 MB). The first fits then took
    ~1,600 and ~3,500 faults, and every logistic fit after them ~25.
    """
    import numpy as np  # the training process has it imported (PRELOAD)

    raised = np.ones(30 << 20, dtype=np.uint8)
    del raised
    pieces = [np.ones(1 << 20, dtype=np.uint8) for _ in range(megabytes)]
    del pieces


def _loop(conn: Connection, worker: ThreadPoolExecutor) -> None:
    while True:
        try:
            fn, args = transfer.receive(conn)
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, worker.submit(fn, *args).result())
        except Exception as exc:
            reply = (False, _portable(exc))
        del args  # a fit's input is freed before its answer is copied out
        try:
            transfer.send(conn, reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result does not pickle
            failed = TypeError(f"the result of {fn.__name__} could not be sent: {exc}")
            transfer.send(conn, (False, failed))


def _portable(exc: Exception) -> Exception:
    """The exception itself if it pickles, else one that says the same in words."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (bytes made one line above)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _lower_priority() -> None:
    try:
        os.nice(NICE)
    except OSError as exc:
        log.warning("could not lower the priority of a training process: %s", exc)


def start_forkserver() -> None:
    """Start the forkserver now, from the calling thread (the main one, which lives as long
    as the process: on Linux the forkserver dies with the thread that started it)."""
    if isinstance(_CONTEXT, ForkServerContext):
        from multiprocessing import forkserver

        # Only a forkserver started from the main thread may die with its parent: started
        # lazily from a worker thread (an app embedded in tests), it would die with that
        # thread, under the next app's training processes.
        os.environ[orphans.ARM_FORKSERVER] = "1"
        try:
            forkserver.ensure_running()
        finally:
            os.environ.pop(orphans.ARM_FORKSERVER, None)


def _exit_with_parent() -> None:
    """Exit once the service is gone, even in the middle of a fit nobody will collect.

    On Linux the kernel kills us with our parent (the forkserver, which dies with the
    service); elsewhere a thread notices that we were adopted."""
    if orphans.die_with_parent():
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)

    if sys.platform != "win32":
        threading.Thread(target=watch, name="mlops-orphan-check", daemon=True).start()
