"""A lean HTTP/1.1 keep-alive load generator for bench/reads.py.

Requests are pre-encoded bytes and responses are read by Content-Length, so the client costs
little CPU next to the server it measures (both share this machine's cores, and the same
client drives the service and the bare endpoint alike).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

HEADER_END = b"\r\n\r\n"


def encode(path: str, host: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


class BadStatus(Exception):
    """The server answered something other than 200."""


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(HEADER_END)
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    await reader.readexactly(length)
    return status


async def _client(
    port: int, requests: Sequence[bytes], start: int, deadline: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        for request in itertools.islice(itertools.cycle(requests), start, None):
            began = time.perf_counter()
            if began >= deadline:
                break
            writer.write(request)
            status = await _read_response(reader)
            latencies.append((time.perf_counter() - began) * 1000)
            if status != 200:
                raise BadStatus(f"status {status} for {request.split(b' ')[1].decode()}")
            done += 1
    finally:
        writer.close()
    return done


async def _run(port: int, requests: Sequence[bytes], clients: int, seconds: float) -> Rate:
    latencies: list[float] = []
    spacing = max(7, len(requests) // clients)  # clients spread over the requests
    began = time.perf_counter()
    deadline = began + seconds
    counts = await asyncio.gather(
        *(_client(port, requests, i * spacing, deadline, latencies) for i in range(clients))
    )
    return Rate(sum(counts), time.perf_counter() - began, latencies)


def measure(port: int, requests: Sequence[bytes], *, clients: int, seconds: float) -> Rate:
    """Requests per second over `seconds` with `clients` keep-alive connections, each sending
    its next request as soon as the previous answer is read (cycling through `requests`)."""
    return asyncio.run(_run(port, requests, clients, seconds))
