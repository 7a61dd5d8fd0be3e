"""Run the Alembic migrations from code (`mlops db upgrade`, `mlops serve`).

The scripts live in `migrations/` beside `alembic.ini` at the top of a checkout; an installed
package carries both in `<prefix>/share/mlops` (the wheel's data files).
"""

from __future__ import annotations

import sysconfig
from importlib import metadata
from pathlib import Path

from alembic import command
from alembic.config import Config

DISTRIBUTION = "mlops"
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
INSTALLED_INI = "share/mlops/alembic.ini"


class MigrationsNotFound(RuntimeError):
    """Neither a checkout nor an installed package holds alembic.ini and migrations/."""


def _holds_migrations(root: Path) -> bool:
    return (root / "alembic.ini").is_file() and (root / "migrations" / "env.py").is_file()


def _installed_root() -> Path | None:
    """Where the installed distribution put its data files, from its RECORD."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.as_posix().endswith(INSTALLED_INI):
            return Path(str(entry.locate())).resolve().parent
    return None


def migrations_root() -> Path:
    """The directory holding alembic.ini and migrations/: the checkout, else the install."""
    fallback = Path(sysconfig.get_paths()["data"]) / "share" / "mlops"
    for root in (CHECKOUT_ROOT, _installed_root(), fallback):
        if root is not None and _holds_migrations(root):
            return root
    raise MigrationsNotFound(
        f"no alembic.ini and migrations/ in {CHECKOUT_ROOT} nor in {fallback}; "
        "reinstall the mlops package"
    )


def alembic_config(url: str) -> Config:
    """An Alembic config for the migrations, aimed at `url`."""
    root = migrations_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    # ConfigParser interpolation would choke on '%' in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Migrate the database at `url` to the latest revision."""
    command.upgrade(alembic_config(url), "head")
