"""A tiny local HTTP server standing in for a deploy target."""

from __future__ import annotations

import json
import threading
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


@contextmanager
def deploy_target(status: int = 200) -> Iterator[DeployTarget]:
    """Serve POST /deploy on a free port, answering `status` (changeable while running)."""
    target = DeployTarget(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            target.received.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(target.status)
            self.end_headers()

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
