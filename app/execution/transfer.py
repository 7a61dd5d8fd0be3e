"""Moving a call's arguments and result between the service and a training process.

Pickle protocol 5 hands the large buffers (numpy and Arrow columns) over out of band. On Linux
they are copied into a shared-memory file whose descriptor crosses the pipe, and the receiver
maps it and unpickles around the mapping without copying again. The service reuses one such
file per training process (an Outbox), so its pages are already allocated: on this 2-core VM a
30 MB train split costs ~4 ms to copy into it and ~5 ms to map, against ~25 ms for the first
touch of fresh pages and ~100 ms through the pipe (four copies plus the receiver's wake-ups).
Small messages, and every message where there is no memfd, go through the pipe as usual.
"""

from __future__ import annotations

import mmap
import os
import pickle
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

SHARED_MIN_BYTES = 1 << 20  # below this, one copy more costs less than a shared file
_SHARED = hasattr(os, "memfd_create")


class Outbox:
    """A shared-memory file one sender reuses for its messages to one receiver.

    Safe only when the receiver is done with a message's data before the next one is written:
    a training process answers a call after the call has ended, and only then is the next call
    written. The receiver maps each message privately, so a fit that writes into its input
    changes its own copy of the pages, never the file.
    """

    def __init__(self) -> None:
        self._descriptor: int | None = None
        self._mapping: mmap.mmap | None = None

    @property
    def capacity(self) -> int:
        return len(self._mapping) if self._mapping is not None else 0

    def reserve(self, size: int) -> None:
        """Have room for messages of `size` bytes, its pages written now instead of by the
        first message (~25-35 ms for 32 MB, which a run's first call waited for)."""
        if size < SHARED_MIN_BYTES or size <= self.capacity or not _SHARED:
            return
        mapping = self._replace(size)
        block = memoryview(bytes(1 << 20))  # sliced without a copy (a bytes slice copies)
        for offset in range(0, len(mapping), len(block)):
            mapping[offset : offset + len(block)] = block[: len(mapping) - offset]

    def write(self, raws: list[memoryview], sizes: list[int]) -> int:
        """Copy the buffers in, one after another; the file's descriptor."""
        if sum(sizes) > self.capacity:
            self._replace(room_for(sum(sizes)))
        assert self._mapping is not None and self._descriptor is not None
        offset = 0
        for raw, size in zip(raws, sizes, strict=True):
            self._mapping[offset : offset + size] = raw
            offset += size
        return self._descriptor

    def _replace(self, size: int) -> mmap.mmap:
        self.close()
        self._descriptor = os.memfd_create("mlops-transfer", os.MFD_CLOEXEC)
        os.ftruncate(self._descriptor, size)
        self._mapping = mmap.mmap(self._descriptor, size)
        return self._mapping

    def close(self) -> None:
        if self._mapping is not None:
            self._mapping.close()
        if self._descriptor is not None:
            os.close(self._descriptor)
        self._descriptor, self._mapping = None, None


def room_for(size: int) -> int:
    """What a shared file for `size` bytes is made with: a quarter more, so that data which
    grows a little from run to run (a source that gains rows) still fits, on pages already
    written."""
    return size + size // 4


def send(conn: Connection, obj: object, outbox: Outbox | None = None) -> None:
    """Send obj, through `outbox` if given (else a new shared file); see receive()."""
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = _contiguous(buffers)
    sizes = [raw.nbytes for raw in raws] if raws is not None else []
    if not buffers:
        conn.send(None)
        conn.send_bytes(payload)
    elif raws is None or not _SHARED or sum(sizes) < SHARED_MIN_BYTES:
        conn.send(None)
        conn.send_bytes(pickle.dumps(obj, protocol=5))
    elif outbox is not None:
        _send_shared(conn, payload, sizes, outbox.write(raws, sizes))
    else:
        once = Outbox()
        try:
            _send_shared(conn, payload, sizes, once.write(raws, sizes))
        finally:
            once.close()


def receive(conn: Connection) -> Any:
    """What the other end's send() sent."""
    sizes: list[int] | None = conn.recv()
    payload = conn.recv_bytes()
    if sizes is None:
        return pickle.loads(payload)  # noqa: S301 (our own training process, its own pipe)
    descriptor = recv_handle(conn)
    try:
        # Private: a fit that writes into its input changes its own copy of the pages only.
        shared = mmap.mmap(descriptor, sum(sizes), flags=mmap.MAP_PRIVATE)
    finally:
        os.close(descriptor)
    # The unpickled arrays keep the mapping alive; it is unmapped when the last one goes.
    view, offset, buffers = memoryview(shared), 0, []
    for size in sizes:
        buffers.append(view[offset : offset + size])
        offset += size
    return pickle.loads(payload, buffers=buffers)  # noqa: S301 (as above)


def _contiguous(buffers: list[pickle.PickleBuffer]) -> list[memoryview] | None:
    """The buffers as flat byte views, or None if one is not contiguous in memory."""
    try:
        return [buffer.raw() for buffer in buffers]
    except BufferError:
        return None


def _send_shared(conn: Connection, payload: bytes, sizes: list[int], descriptor: int) -> None:
    conn.send(sizes)
    conn.send_bytes(payload)
    send_handle(conn, descriptor, os.getpid())
