"""A tiny local HTTP server standing in for a deploy target (POST) or a data source (GET).

`script` makes it fail before it succeeds: each request takes the next action from it (a
status code to answer, "reset" to drop the connection unanswered, "slow" to answer only after
`slow_s`), and once the script is used up it answers `status`.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class DeployTarget:
    url: str
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    # Each POST as sent: its headers and exact body (for signature checks).
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int | str] = field(default_factory=list)
    body: bytes = b""  # what a GET answers
    slow_s: float = 2.0
    requests: int = 0

    def next_action(self) -> int | str:
        self.requests += 1
        return self.script.pop(0) if self.script else self.status


@contextmanager
def deploy_target(
    status: int = 200, script: list[int | str] | None = None, body: bytes = b""
) -> Iterator[DeployTarget]:
    """Serve POST /deploy (and GET of any path) on a free port; see the module docstring."""
    target = DeployTarget(url="", script=list(script or []), body=body)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            target.raw.append((dict(self.headers.items()), body))
            target.received.append(json.loads(body or b"{}"))
            self._answer(b"")

        def do_GET(self) -> None:
            self._answer(target.body)

        def _answer(self, body: bytes) -> None:
            action = target.next_action()
            if action == "reset":
                # SO_LINGER 0: close sends a TCP reset, as a crashed proxy would.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                # Nothing is left to flush to a closed socket.
                self.wfile = io.BytesIO()
                return
            if action == "slow":
                time.sleep(target.slow_s)
                action = 200
            assert isinstance(action, int)
            self.send_response(action)
            self.send_header("Content-Length", str(len(body) if action < 300 else 0))
            self.end_headers()
            if action < 300:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    target.url = f"http://127.0.0.1:{server.server_address[1]}/deploy"
    target.status = status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
