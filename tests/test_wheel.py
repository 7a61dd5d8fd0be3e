"""The built wheel works on its own: installed outside the checkout, `mlops db upgrade` finds
its migrations in an empty directory and `mlops serve` answers /healthz.

The wheel is built without network (the dev extra brings setuptools); the fresh venv gets
the wheel with --no-deps and sees the dependencies already installed here through symlinks,
so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core import migrate
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "alembic.ini", "app", "migrations"]
# What the checkout's environment holds of mlops itself (the editable install): left out.
OWN = ("mlops", "__editable__", "_mlops", "app")


def pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def build_wheel(tmp: Path) -> tuple[Path, str]:
    """Build from a copy of the sources (the checkout stays clean); the wheel and the log."""
    tree = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    built = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(tree))
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp / "dist").glob("mlops-*.whl")
    return wheel, built.stdout + built.stderr


def fresh_venv(path: Path) -> Path:
    """A venv without mlops, whose site-packages links to this environment's other packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.startswith(OWN) and not entry.name.endswith(".pth"):
            (Path(site) / entry.name).symlink_to(entry)
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel, log = build_wheel(tmp)
    python = fresh_venv(tmp / "venv")
    done = pip("--python", str(python), "install", "--no-index", "--no-deps", str(wheel))
    assert done.returncode == 0, done.stdout + done.stderr
    yield tmp / "venv" / "bin", log


def clean_env(workdir: Path) -> dict[str, str]:
    """No PYTHONPATH and no MLOPS_ settings: a new user's shell in an empty directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PYTHON"))}
    return {**env, "MLOPS_ADMIN_TOKEN": "wheel-test-admin-token-0123456789"}


def test_builds_without_deprecation_warnings(installed: tuple[Path, str]) -> None:
    _, log = installed
    assert "deprecated" not in log.lower(), log


def test_carries_the_migrations(installed: tuple[Path, str], tmp_path: Path) -> None:
    bin_dir, _ = installed
    where = subprocess.run(
        [bin_dir / "python", "-c", "import app, app.core.migrate as m; print(m.migrations_root())"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent), where
    assert sorted(p.name for p in (Path(where) / "migrations" / "versions").glob("*.py")) == sorted(
        p.name for p in (ROOT / "migrations" / "versions").glob("*.py")
    )


def test_db_upgrade_in_an_empty_directory(installed: tuple[Path, str], tmp_path: Path) -> None:
    bin_dir, _ = installed
    done = subprocess.run(
        [bin_dir / "mlops", "db", "upgrade"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "Database is at the latest revision\n"
    head = migrate_head()
    with sqlite3.connect(tmp_path / ".mlops" / "mlops.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def migrate_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_serve_answers_healthz(installed: tuple[Path, str], tmp_path: Path) -> None:
    bin_dir, _ = installed
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [bin_dir / "mlops", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}", server), log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_healthy(url: str, server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def locked() -> dict[str, str]:
    """name -> version from requirements.lock (the lines for this interpreter)."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                (spec,) = requirement.specifier
                pins[canonical(requirement.name)] = spec.version
    return pins


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def test_the_lock_pins_every_dependency_within_its_bounds() -> None:
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(pins[canonical(requirement.name)]), line
        if canonical(requirement.name) in {"scikit-learn", "pandas", "skops", "apscheduler"}:
            assert any(spec.operator == "<" for spec in requirement.specifier), line
    assert "scipy" not in {canonical(Requirement(d).name) for d in project["dependencies"]}
    assert project["license"] == "Apache-2.0"
