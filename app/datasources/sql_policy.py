"""Which databases a `sql` source may read: a named connection the operator configured, a
SQLite file in the source directories, or a URL matching the operator's pattern; never the
service's own database."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.core.errors import SourceError
from app.core.settings import Settings
from app.spec.schema import SqlSource

_LOOPBACK = frozenset({"", "localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def source_url(source: SqlSource, settings: Settings) -> str:
    """The database URL the source may connect to; SourceError says why it may not."""
    if source.connection is not None:
        url = _configured(source.connection, settings)
    else:
        assert source.url is not None  # the spec requires one of the two
        url = source.url
        _check_allowed(url, settings)
    if _same_database(url, settings):
        raise SourceError(
            "SQL source not allowed: that is the service's own database; "
            "point the source at a copy, or a read-only replica of the data it needs"
        )
    return url


def _configured(name: str, settings: Settings) -> str:
    url = settings.sql_connections.get(name)
    if url is None:
        known = ", ".join(sorted(settings.sql_connections)) or "none configured"
        raise SourceError(
            f"SQL connection {name!r} is not configured (MLOPS_SQL_CONNECTIONS: {known})"
        )
    return url


def _check_allowed(url: str, settings: Settings) -> None:
    if _is_sqlite(url):
        return  # a file: confined to MLOPS_SOURCE_DIRS when it is opened, like csv files
    pattern = settings.sql_url_allow
    if pattern is not None and re.fullmatch(pattern, url):
        return
    raise SourceError(
        "SQL source not allowed: a database URL in the spec must match MLOPS_SQL_URL_ALLOW"
        f"{'' if pattern else ' (not set)'}; name a connection from MLOPS_SQL_CONNECTIONS "
        "instead (`connection: <name>`)"
    )


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL opens (as written), or None for other databases and memory."""
    parsed = _parsed(url)
    if parsed is None or parsed.get_backend_name() != "sqlite":
        return None
    return None if parsed.database in (None, "", ":memory:") else parsed.database


def _parsed(url: str) -> URL | None:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _is_sqlite(url: str) -> bool:
    parsed = _parsed(url)
    return parsed is not None and parsed.get_backend_name() == "sqlite"


def _same_database(url: str, settings: Settings) -> bool:
    """True when `url` names the service's own database (a server compared by address, with
    loopback names and default ports alike; SQLite by the file it would open)."""
    theirs, ours = _parsed(url), _parsed(settings.resolved_database_url)
    if theirs is None or ours is None:
        return False
    backend = theirs.get_backend_name()
    if backend != ours.get_backend_name():
        return False
    if backend == "sqlite":
        own = _sqlite_file(ours, Path.cwd())
        # Relative paths are looked up in each source directory, as when the file is opened.
        return own is not None and own in {_sqlite_file(theirs, r) for r in settings.source_dirs}
    return _address(theirs) == _address(ours)


def _sqlite_file(url: URL, root: Path) -> Path | None:
    name = url.database or ""
    if name in ("", ":memory:") or "\x00" in name:
        return None
    return (root / name).resolve()  # an absolute name replaces the root


def _address(url: URL) -> tuple[str, int | None, str | None]:
    host = (url.host or "").lower().strip("[]")
    host = "localhost" if host in _LOOPBACK else host
    port = url.port or _DEFAULT_PORTS.get(url.get_backend_name())
    return host, port, url.database


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_READING = frozenset({"select", "with", "values", "table"})


def check_query(query: str) -> None:
    """Refuse anything but one reading statement, before it ever reaches a database.

    Checked when a spec is stored, for a clear early answer; at run time the query still runs
    in a read-only transaction, as one prepared statement, which stops what a spec stored
    before this check (or a check missed) would try.
    """
    noise = _LEADING_NOISE.match(query)
    rest = query[noise.end() if noise else 0 :]
    keyword = re.match(r"[A-Za-z]+", rest)
    if keyword is None or keyword.group().lower() not in _READING:
        shown = keyword.group().upper() if keyword else (rest[:20] or "an empty query")
        raise SourceError(
            f"SQL source query must be one SELECT (or WITH … SELECT) statement, not {shown}"
        )
    # Literals, quoted names and comments may say anything; only the code around them counts.
    code = _QUOTED.sub(" ", query)
    if ";" in code.rstrip().rstrip(";"):
        raise SourceError(
            "SQL source query must be one statement: found `;` followed by another statement"
        )
    if (writes := _MODIFYING.search(code)) is not None:
        raise SourceError(
            "SQL source query must only read: found "
            f"{writes.group().upper()} (a data-modifying statement, in a CTE or elsewhere)"
        )


_QUOTED = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/"
    r"|\$(\w*)\$.*?\$\1\$",
    re.DOTALL,
)
_MODIFYING = re.compile(
    r"\b(?:insert|update|delete|merge|upsert|truncate|drop|alter|create|grant|revoke|copy"
    r"|attach|detach|pragma|vacuum|lock)\b",
    re.IGNORECASE,
)
