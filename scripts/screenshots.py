"""Make the README's dashboard screenshots from a real server.

Starts `mlops serve --demo` on a free port with a fresh data directory, runs the demo
pipeline twice, rolls production back once, posts monitored-metric observations, adds two
more pipelines, then has Debian's Chromium (Playwright, /usr/bin/chromium, never a download)
save PNGs of /ui, the demo's pipeline page (light and dark) and a run page into
docs/screenshots/.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
DEMO = "breast-cancer-demo"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FINAL = {"completed", "failed", "rejected", "awaiting_approval", "cancelled"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(workdir: Path, token: str) -> Iterator[str]:
    """`mlops serve --demo` on a free port; yields its URL."""
    port = _free_port()
    env = {**os.environ, "MLOPS_DATA_DIR": str(workdir / ".mlops"), "MLOPS_ADMIN_TOKEN": token}
    command = [sys.executable, "-m", "app.cli.main", "serve", "--port", str(port), "--demo"]
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited; see server.log")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready within 60 s")


def run(api: httpx.Client, name: str, reason: str) -> int:
    """Trigger a run of `name` and wait for it to end; returns its id."""
    made = api.post(f"/pipelines/{name}/runs", json={"reason": reason})
    made.raise_for_status()
    run_id: int = made.json()["id"]
    while api.get(f"/runs/{run_id}").json()["status"] not in FINAL:
        time.sleep(0.2)
    return run_id


def populate(api: httpx.Client) -> int:
    """History worth looking at; returns the run to show."""
    spec = api.get(f"/pipelines/{DEMO}").json()["spec"]
    spec["triggers"] += [
        {"kind": "metric", "metric": "accuracy", "operator": "<", "threshold": 0.9},
        {
            "kind": "metric",
            "metric": "accuracy",
            "operator": "<",
            "threshold": 0.85,
            "aggregate": "min",
        },
    ]
    api.put(f"/pipelines/{DEMO}", json=spec).raise_for_status()
    run(api, DEMO, "first model")
    shown = run(api, DEMO, "new labels arrived")
    api.post(f"/pipelines/{DEMO}/rollback", json={"reason": "v2 under review"}).raise_for_status()
    values = [0.97, 0.96, 0.965, 0.95, 0.955, 0.94, 0.945, 0.93, 0.935, 0.925, 0.93, 0.92]
    start = datetime.now(UTC) - timedelta(hours=len(values))
    observations = [
        {"metric": "accuracy", "value": v, "observed_at": (start + timedelta(hours=i)).isoformat()}
        for i, v in enumerate(values)
    ]
    api.post(f"/pipelines/{DEMO}/metrics", json={"observations": observations})
    for name, dataset, triggers in [
        ("iris-nightly", "iris", [{"kind": "cron", "schedule": "30 1 * * *"}]),
        ("wine-hourly", "wine", [{"kind": "interval", "every_s": 3600}]),
    ]:
        other = {**spec, "name": name, "description": f"scikit-learn's {dataset} data"}
        other |= {"source": {"kind": "sklearn", "dataset": dataset}, "triggers": triggers}
        other["evaluation"] = {**spec["evaluation"], "min_score": 0.8}
        api.post("/pipelines", json=other).raise_for_status()
    run(api, "iris-nightly", "first model")
    api.post("/pipelines/wine-hourly/pause").raise_for_status()
    return shown


def shoot(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / name), full_page=True)
    print(f"saved {OUT / name}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), token) as url:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=headers, timeout=60) as api:
            run_id = populate(api)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            for scheme, suffix in [("light", ""), ("dark", "-dark")]:
                context = browser.new_context(
                    viewport={"width": 1280, "height": 800}, color_scheme=scheme
                )
                page = context.new_page()
                page.goto(f"{url}/ui/login")
                page.locator('input[name="key"]').fill(token)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{url}/ui")
                shoot(page, f"{url}/ui", f"dashboard{suffix}.png")
                shoot(page, f"{url}/ui/pipelines/{DEMO}", f"pipeline{suffix}.png")
                shoot(page, f"{url}/ui/runs/{run_id}", f"run{suffix}.png")
                context.close()
            browser.close()


if __name__ == "__main__":
    main()
