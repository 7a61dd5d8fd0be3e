"""Run the real `mlops serve` in a subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# The admin key every test server and in-process app accepts (MLOPS_ADMIN_TOKEN).
ADMIN_TOKEN = "mlops-test-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`mlops serve` on a free port with its own data dir; start, kill, restart.

    It accepts ADMIN_TOKEN unless `MLOPS_ADMIN_TOKEN=""` is passed, which leaves it to make
    its bootstrap key (in `$MLOPS_DATA_DIR/admin-token`) as a first start does.
    """

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        *,
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.workdir = workdir
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "MLOPS_DATA_DIR": str(workdir / ".mlops"),
            "MLOPS_SOURCE_DIRS": str(workdir),
            "MLOPS_ADMIN_TOKEN": ADMIN_TOKEN,
            # Most tests never train: no training process prepared at start (see test_warm).
            "MLOPS_WARM_START": "false",
            **({"MLOPS_DATABASE_URL": database_url} if database_url else {}),
            **env,
        }
        # What starts `mlops`: the checkout's module by default.
        self.command = [sys.executable, "-m", "app.cli.main"]
        self.serve_args: list[str] = []  # more `mlops serve` options (--demo)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "server.log"

    def start(self, timeout: float = 60) -> Server:
        command = [*self.command, "serve", "--port", str(self.port), *self.args, *self.serve_args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a crashed node."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def token(self) -> str | None:
        """An admin key: MLOPS_ADMIN_TOKEN, else the bootstrap key the server wrote."""
        if self.env.get("MLOPS_ADMIN_TOKEN"):
            return self.env["MLOPS_ADMIN_TOKEN"]
        path = Path(self.env["MLOPS_DATA_DIR"]) / "admin-token"
        return path.read_text().strip() if path.exists() else None

    def api(self) -> httpx.Client:
        """A client of /api/v1 sending the admin key."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=30, headers=headers)
